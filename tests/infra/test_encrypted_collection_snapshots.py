"""Encryption at rest of collection and full snapshot files (the HTTP API's), through the real broker."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import fastavro
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from qdrant_client import QdrantClient, models

from consumers import artefacts, integrity, sealedstreams, snapshots
from infra.keyring import Keyring
from infra.settings import Settings
from projections.catalog import sealed
from projections.catalog.store import Catalog
from schemas.errors import AuthenticationFailed, Shredded
from tests.api.conftest import serving
from tests.helpers import run_cli
from tests.infra.conftest import ROWS, SECRET
from tests.infra.test_encrypted_catalog import assert_nothing_clear


class _OpenOnly:
    """A keyring's keys for opening only: what a server with encryption off (and no key for the
    collection) cuts, the clear tar, from the same sealed projection snapshot."""

    def __init__(self, ring: Keyring) -> None:
        self.ring = ring

    def cipher(self, collection: str, key_id: bytes) -> AESGCM | None:
        return self.ring.cipher(collection, key_id)

    def shredded(self, collection: str, key_id: bytes) -> bool:
        return self.ring.shredded(collection, key_id)

    def snapshot_key(self, collection: str) -> tuple[bytes, AESGCM] | None:
        return None


def _members(tar_bytes: bytes) -> dict[str, object]:
    """A collection snapshot's content: every member, the points as records (Avro's sync marker is
    random) and the manifest without its creation time (what two cuts of one snapshot differ in)."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        out: dict[str, object] = {}
        for info in tar:
            extracted = tar.extractfile(info)
            assert extracted is not None
            out[info.name] = extracted.read()
    manifest = json.loads(out["manifest.json"])  # type: ignore[arg-type]
    del manifest["created_at"], manifest["members"]["points.avro"]
    out["manifest.json"] = manifest
    out["points.avro"] = list(fastavro.reader(io.BytesIO(out["points.avro"])))  # type: ignore[arg-type]
    return out


def test_collection_snapshots_are_sealed_at_rest_and_download_list_and_recover_in_clear(
        encrypted: Settings, tmp_path: Path) -> None:
    with serving(encrypted) as server:
        client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        client.create_collection("secret", vectors_config=models.VectorParams(size=8, distance=models.Distance.EUCLID))
        client.upsert("secret", [models.PointStruct(id=i + 1, vector=ROWS[i].tolist(),
                                                    payload={"note": f"{SECRET}-{i}"}) for i in range(3)], wait=True)
        created = client.create_snapshot("secret", wait=True)
        assert created is not None
        stored = artefacts.collections_root(encrypted.data_dir) / "secret" / created.name
        assert stored.read_bytes().startswith(sealedstreams.MAGIC)
        got = server.http.get(f"/collections/secret/snapshots/{created.name}")
        assert got.status_code == 200, got.text
        # The answer and the listing describe the file a download returns (Qdrant's size and SHA-256).
        assert (created.size, created.checksum) == (len(got.content), hashlib.sha256(got.content).hexdigest())
        assert [(s.name, s.size, s.checksum) for s in client.list_snapshots("secret")] == [
            (created.name, created.size, created.checksum)]
        # The download is the portable tar, the same as a server with encryption off cuts.
        dump = artefacts.read_collection(io.BytesIO(got.content))
        assert dump.payloads == tuple({"note": f"{SECRET}-{i}"} for i in range(3))
        cut = artefacts.read_collection(io.BytesIO(got.content)).manifest["snapshot_id"]
        ring = Keyring.open(encrypted)
        assert ring is not None
        try:
            side = json.loads(stored.with_name(stored.name + ".json").read_text())
            clear = artefacts.write_collection(encrypted.snapshot_dir / cut, "secret", side["created_offset"],
                                               tmp_path / "clear", _OpenOnly(ring))
        finally:
            ring.close()
        assert _members(clear.read_bytes()) == _members(got.content)
        # Recovery from the sealed file on disk (file://), checked against the download's checksum.
        answer = server.http.put("/collections/copy/snapshots/recover",
                                 json={"location": stored.as_uri(), "checksum": created.checksum})
        assert answer.status_code == 200, answer.text
        copied = client.retrieve("copy", [1, 2, 3], with_vectors=True)
        assert [p.payload for p in copied] == [{"note": f"{SECRET}-{i}"} for i in range(3)]
        assert [p.vector for p in copied] == [ROWS[i].tolist() for i in range(3)]
        # A full snapshot: the tar of a projection snapshot, whose collection files are sealed.
        full = server.http.post("/snapshots")
        assert full.status_code == 200, full.text
        tar_file = artefacts.full_root(encrypted.data_dir) / full.json()["result"]["name"]
        with tarfile.open(tar_file) as tar:
            names = tar.getnames()
        assert "manifest.json" in names and len(names) > 5
        # Nothing below the data directory holds a vector's bytes or a payload: catalog.db, the
        # projection snapshots, the collection and full snapshot files.
        assert_nothing_clear(encrypted.data_dir)
        with pytest.raises(AssertionError):  # which the clear cut would not pass: the check can fail
            assert_nothing_clear(tmp_path / "clear")
        # A collection snapshot written in clear (before encryption was on) lists and downloads as it is.
        old = clear.rename(stored.parent / clear.name.replace("secret-", "secret-old-"))
        clear.with_name(clear.name + ".json").rename(old.with_name(old.name + ".json"))
        listed = {s.name: (s.size, s.checksum) for s in client.list_snapshots("secret")}
        assert listed[old.name] == (old.stat().st_size, artefacts.sha256_of(old))
        assert server.http.get(f"/collections/secret/snapshots/{old.name}").content == old.read_bytes()
        old.unlink()
        # One altered byte: the download is refused before any byte is sent, and says why.
        raw = bytearray(stored.read_bytes())
        raw[-40] ^= 1
        stored.write_bytes(bytes(raw))
        refused = server.http.get(f"/collections/secret/snapshots/{created.name}")
        assert refused.status_code == 400 and "failed authentication" in refused.text, refused.text
        stored.write_bytes(bytes(raw[:-40]) + bytes([raw[-40] ^ 1]) + bytes(raw[-39:]))
    report = integrity.verify(encrypted)
    assert report.ok, report.problems
    # Shredding the collection's keys: its stored snapshot cannot be read any more (a restart's keys).
    code, out = run_cli(encrypted, "collections", "delete", "secret", "--shred", "--no-wait",
                        env={"VECTORIZER_ENCRYPTION_KEY_FILE": str(encrypted.encryption_key_file)})
    assert code == 0 and "shredded 1 data keys of secret" in out, out
    catalog = Catalog.of(encrypted, create=False)  # the rows as the catalog holds them until it applies the deletion
    rows = list(catalog.point_rows("secret"))
    catalog.close()
    ring = Keyring.open(encrypted)
    assert ring is not None
    try:
        assert len(rows) == 3
        for row in rows:
            with pytest.raises(Shredded):
                sealed.open_payload(row["payload"], "secret", row["point_key"], ring)
        with pytest.raises(Shredded), artefacts.opened(stored, ring):
            pass
        with pytest.raises(AuthenticationFailed):  # the other collection's key does not open it either
            list(sealedstreams.clear_chunks(stored, _Renamed(ring, "copy")))
    finally:
        ring.close()
    assert snapshots.list_snapshots(encrypted.snapshot_dir)


class _Renamed:
    """Keys that answer for ``collection`` with another collection's newest key (a swapped file)."""

    def __init__(self, ring: Keyring, collection: str) -> None:
        self.ring, self.collection = ring, collection

    def cipher(self, collection: str, key_id: bytes) -> AESGCM | None:
        key = self.ring.data_keys(self.collection)[-1]
        return key.cipher

    def shredded(self, collection: str, key_id: bytes) -> bool:
        return False


def test_a_sealed_stream_authenticates_every_chunk_and_its_end(tmp_path: Path) -> None:
    cipher, key_id = AESGCM(AESGCM.generate_key(256)), b"k" * 16

    class One:
        def cipher(self, collection: str, kid: bytes) -> AESGCM | None:
            return cipher if kid == key_id else None

        def shredded(self, collection: str, kid: bytes) -> bool:
            return False

    for size in (0, 5, 16, 40):  # empty, short, exactly one chunk, several
        clear = bytes(range(size))
        path = tmp_path / f"s{size}"
        with open(path, "wb") as raw:
            out = sealedstreams.SealingWriter(raw, "c", 7, key_id, cipher, chunk_bytes=16)
            out.write(clear)
            out.finish()
        assert out.size == size and out.sha256 == hashlib.sha256(clear).hexdigest()
        assert b"".join(sealedstreams.clear_chunks(path, One())) == clear
        assert sealedstreams.header(path) == ("c", 7, key_id)
        sealed = path.read_bytes()
        assert clear[:5] not in sealed or size == 0
        # Truncated mid-chunk, or on a chunk boundary (the final chunk dropped), or with bytes after the end.
        for damaged in (sealed[:-1], sealed[:len(sealed) - (size % 16 + 16)], sealed + b"\0"):
            path.write_bytes(damaged)
            with pytest.raises(AuthenticationFailed):
                b"".join(sealedstreams.clear_chunks(path, One()))
        if size == 40:  # two full chunks swapped
            head = len(sealed) - 32 - 32 - 24
            path.write_bytes(sealed[:head] + sealed[head + 32:head + 64] + sealed[head:head + 32] + sealed[head + 64:])
            with pytest.raises(AuthenticationFailed):
                b"".join(sealedstreams.clear_chunks(path, One()))
