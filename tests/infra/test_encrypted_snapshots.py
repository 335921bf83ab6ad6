"""Encryption at rest of the data directory's projection snapshots, through the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumers import integrity, sealedfiles, snapshots
from infra import kek
from infra.keyring import Keyring
from infra.settings import Settings
from producers import VectorProducer
from schemas.errors import Shredded
from tests.helpers import run_cli, running_projector, state_of
from tests.infra.conftest import ROWS, SECRET, projected_secrets, write_secrets


def _files(snapshot: Path) -> list[Path]:
    return [f for f in snapshot.iterdir() if f.name not in ("manifest.json", snapshots.REQUESTED_FOR)]


def _entry(snapshot: Path, collection: str) -> dict[str, object]:
    manifest = snapshots.read_manifest(snapshot)
    return next(e for e in manifest["collections"] if e["config"]["name"] == collection)


def test_snapshot_files_hold_no_vector_or_payload_and_a_restart_recovers_from_them(encrypted: Settings) -> None:
    _, before = projected_secrets(encrypted)
    (snapshot,) = snapshots.list_snapshots(encrypted.snapshot_dir)
    manifest = snapshots.read_manifest(snapshot)
    assert manifest["format"] == snapshots.SEALED_FORMAT and _entry(snapshot, "secret")["sealed"] is True
    files = _files(snapshot)
    assert {f.suffix for f in files} >= {".hnsw", ".npy", ".avro", ".json"}
    for f in files:
        raw = f.read_bytes()
        assert raw.startswith(sealedfiles.MAGIC), f.name
        assert ROWS[0].tobytes()[:8] not in raw and SECRET.encode() not in raw, f.name
    assert SECRET.encode() not in (snapshot / "manifest.json").read_bytes()
    with running_projector(encrypted) as proj:  # restart: from the sealed snapshot, nothing replayed
        assert proj.stats.loaded_snapshot == snapshot.name
        assert state_of(proj) == before
    report = integrity.verify(encrypted)
    assert report.ok, report.problems


def test_a_sealed_file_that_fails_authentication_is_a_corrupt_snapshot(encrypted: Settings) -> None:
    last, before = projected_secrets(encrypted)
    (snapshot,) = snapshots.list_snapshots(encrypted.snapshot_dir)
    # Swap the ciphertexts of two files and mend the checksums: only the seal can tell.
    manifest = json.loads((snapshot / "manifest.json").read_text())
    ints, points = (snapshot / n for n in sorted(manifest["files"]) if n.endswith((".ints.npy", ".points.avro")))
    a, b = ints.read_bytes(), points.read_bytes()
    ints.write_bytes(b)
    points.write_bytes(a)
    manifest["files"][ints.name], manifest["files"][points.name] = (snapshots.file_checksum(ints),
                                                                    snapshots.file_checksum(points))
    manifest["manifest_checksum"] = snapshots._manifest_checksum(manifest)  # noqa: SLF001 - forging it
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    assert snapshots.verify(snapshot) == []  # the checksums agree
    ring = Keyring.open(encrypted)
    assert ring is not None
    try:
        problems = snapshots.verify(snapshot, keys=ring, authenticate=True)
        assert problems and all("authentication failed" in p for p in problems), problems
        assert snapshots.load_newest(encrypted.snapshot_dir, keys=ring) is None  # unusable, like a damaged one
    finally:
        ring.close()
    assert any("authentication failed" in p.detail for p in integrity.verify(encrypted).problems)
    with running_projector(encrypted) as proj:  # recovery replays the log instead
        proj.wait_for(0, last, 30)
        assert proj.stats.loaded_snapshot is None and state_of(proj) == before


def test_shredding_a_collection_makes_its_snapshot_files_undecodable_and_the_others_recover(
        encrypted: Settings) -> None:
    write_secrets(encrypted, "gone")
    last = write_secrets(encrypted, "kept")
    with running_projector(encrypted) as proj:
        proj.wait_for(0, last, 30)
        kept = state_of(proj)["kept"]
    (snapshot,) = snapshots.list_snapshots(encrypted.snapshot_dir)
    code, out = run_cli(encrypted, "collections", "delete", "gone", "--shred", "--no-wait",
                        env={"VECTORIZER_ENCRYPTION_KEY_FILE": str(encrypted.encryption_key_file)})
    assert code == 0 and "shredded 1 data keys of gone" in out, out
    ring = Keyring.open(encrypted)
    assert ring is not None
    try:
        gone = _entry(snapshot, "gone")
        files = snapshots._Files(snapshot, gone, True, ring)  # noqa: SLF001 - each file, one by one
        for name in files.roles:
            with pytest.raises(Shredded):
                files.clear(name)
        loaded = snapshots.load(snapshot, keys=ring)  # the same snapshot, without the shredded collection
        assert loaded.shredded == ("gone",) and set(loaded.state.collections) == {"kept"}
    finally:
        ring.close()
    with running_projector(encrypted) as proj:  # restart: the snapshot loads, the clear deletion replays
        proj.wait_for(0, last + 1, 30)
        assert proj.stats.loaded_snapshot == snapshot.name and proj.stats.dead_letters == 0
        assert set(proj.collections()) == {"kept"} and state_of(proj)["kept"] == kept
    assert integrity.verify(encrypted).ok


def test_an_old_clear_snapshot_loads_and_the_next_one_is_sealed_whole(settings: Settings, tmp_path: Path) -> None:
    last = write_secrets(settings, "secret")  # encryption off: a format-3 snapshot in clear, as before
    with running_projector(settings) as proj:
        proj.wait_for(0, last, 30)
        before = state_of(proj)
    (old,) = snapshots.list_snapshots(settings.snapshot_dir)
    assert snapshots.read_manifest(old)["format"] == snapshots.FORMAT
    assert any(SECRET.encode() in f.read_bytes() for f in _files(old))
    clear = {f.stat().st_ino for f in _files(old)}
    key_file = tmp_path / "kek"
    key_file.write_text(kek.generate())
    on = settings.replace(encryption=True, encryption_key_file=key_file)
    with running_projector(on) as proj:
        assert proj.stats.loaded_snapshot == old.name and state_of(proj) == before
        name = proj.request_snapshot(30)
    assert name is not None and name != old.name
    new = on.snapshot_dir / name
    assert _entry(new, "secret")["sealed"] is True
    for f in _files(new):  # nothing linked from the clear snapshot: every file written again, sealed
        assert f.read_bytes().startswith(sealedfiles.MAGIC) and f.stat().st_ino not in clear, f.name
    with running_projector(on) as proj:
        assert proj.stats.loaded_snapshot is not None and state_of(proj) == before


def test_dlq_show_decrypts_an_encrypted_dead_letter_with_the_kek(encrypted: Settings) -> None:
    last = write_secrets(encrypted, "secret")
    with VectorProducer(encrypted) as p:  # sealed, then refused by the projection: no such collection
        refused = p.delete("nowhere-yet", [1]).offset
    with running_projector(encrypted) as proj:
        proj.wait_for(0, refused, 30)
        assert proj.stats.dead_letters == 1, proj.stats.dead_letters_by_reason
    env = {"VECTORIZER_ENCRYPTION_KEY_FILE": str(encrypted.encryption_key_file)}
    code, out = run_cli(encrypted, "--json", "dlq", "show", f"0:{refused}", env=env)
    assert code == 0, out
    event = json.loads(out)["event"]
    assert event["encrypted"] is True and "undecodable" not in event, event
    assert event["type"] == "VectorsDeleted" and event["meta"]["collection"] == "nowhere-yet" and event["ids"] == [1]
    code, out = run_cli(encrypted.replace(encryption=False, encryption_key_file=None), "--json", "dlq", "show",
                        f"0:{refused}")
    assert code == 0, out
    assert "no key-encryption key is configured" in json.loads(out)["event"]["undecodable"]
    assert last < refused
