"""Collection snapshots as files: download, upload into another server, recover through the log;
full-storage snapshots. Through qdrant-client, and raw HTTP for download and upload."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from consumers import artefacts
from tests.api.conftest import Running, serving, unique
from tests.helpers import wait_until


def _client(server: Running) -> QdrantClient:
    return QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)


def _fill(client: QdrantClient, name: str) -> None:
    client.create_collection(
        name, vectors_config={"dense": models.VectorParams(size=4, distance=models.Distance.DOT),
                              "cos": models.VectorParams(size=3, distance=models.Distance.COSINE),
                              "img": models.VectorParams(size=3, distance=models.Distance.EUCLID,
                                                         hnsw_config=models.HnswConfigDiff(m=8))},
        sparse_vectors_config={"text": models.SparseVectorParams(modifier=models.Modifier.IDF)},
        hnsw_config=models.HnswConfigDiff(m=12, ef_construct=64))
    client.create_payload_index(name, "kind", models.PayloadSchemaType.KEYWORD, wait=True)
    client.create_payload_index(name, "n", models.PayloadSchemaType.INTEGER, wait=True)
    rng = np.random.default_rng(7)
    points = []
    for i in range(40):
        vector: dict[str, Any] = {"dense": rng.standard_normal(4).astype(np.float32).tolist(),
                                  "cos": rng.standard_normal(3).astype(np.float32).tolist()}
        if i % 3:
            vector["img"] = rng.standard_normal(3).astype(np.float32).tolist()
        if i % 2:
            vector["text"] = models.SparseVector(indices=[i, i + 7], values=[0.5, float(i)])
        points.append(models.PointStruct(id=i if i % 4 else str(uuid.UUID(int=i + 1)), vector=vector,
                                         payload={"kind": "ab"[i % 2], "n": i, "nested": {"x": [i, None]},
                                                  "pad": "p" * 3000}
                                         if i != 5 else None))
    client.upsert(name, points, wait=True)
    client.update_collection(name, hnsw_config=models.HnswConfigDiff(ef_construct=80))


def _points(client: QdrantClient, name: str) -> dict[Any, tuple[Any, Any]]:
    got, _ = client.scroll(name, limit=1000, with_vectors=True, with_payload=True)
    return {p.id: (p.vector, p.payload) for p in got}


def _same(a: QdrantClient, name_a: str, b: QdrantClient, name_b: str) -> None:
    pa, pb = _points(a, name_a), _points(b, name_b)
    assert len(pa) == 40 and pa.keys() == pb.keys()
    for pid, (vectors, payload) in pa.items():
        assert pb[pid][1] == payload, pid
        assert isinstance(vectors, dict) and isinstance(pb[pid][0], dict)
        assert vectors.keys() == pb[pid][0].keys(), pid
        for vname, value in vectors.items():
            other = pb[pid][0][vname]
            if isinstance(value, models.SparseVector):
                assert isinstance(other, models.SparseVector)
                assert (other.indices, other.values) == (value.indices, value.values), (pid, vname)
            else:  # float32 exact, cosine rows too (published as stored): the bytes of the rows
                assert np.asarray(other, np.float32).tobytes() == np.asarray(value, np.float32).tobytes(), (pid, vname)
    ia, ib = a.get_collection(name_a), b.get_collection(name_b)
    assert ia.config.params == ib.config.params
    assert ia.config.hnsw_config == ib.config.hnsw_config
    assert ia.config.quantization_config == ib.config.quantization_config
    assert {k: v.data_type for k, v in ia.payload_schema.items()} == \
        {k: v.data_type for k, v in ib.payload_schema.items()} and ia.payload_schema.keys() == {"kind", "n"}


def test_a_snapshot_moves_a_collection_to_another_server_through_its_log(
        server: Running, make_server: Callable[..., Running], tmp_path: Path) -> None:
    source = _client(server)
    name = unique("transfer")
    _fill(source, name)
    made = source.create_snapshot(name, wait=True)
    assert made is not None and made.name.startswith(f"{name}-") and made.name.endswith(".snapshot")
    assert made.name in [s.name for s in source.list_snapshots(name)]
    download = server.http.get(f"/collections/{name}/snapshots/{made.name}")
    assert download.status_code == 200
    data = download.content
    assert made.checksum == hashlib.sha256(data).hexdigest() and made.size == len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames()[0] == "manifest.json"

    fresh = make_server(max_message_bytes=128 * 1024)  # its topic's limit: the points take several events
    target = unique("moved")  # the name in the URL is the target, as Qdrant
    refused = fresh.http.post(f"/collections/{target}/snapshots/upload", params={"checksum": "0" * 64},
                              files={"snapshot": (made.name, data)})
    assert refused.status_code == 400 and "Checksum mismatch" in refused.json()["status"]["error"]
    for junk, why in ((b"not a tar at all" * 10, "not a tar file"), (_tar({"manifest.json": b'{"format": 3}'}),
                                                                    "format 3")):
        bad = fresh.http.post(f"/collections/{target}/snapshots/upload", files={"snapshot": ("x.snapshot", junk)})
        assert bad.status_code == 400 and why in bad.json()["status"]["error"], bad.text
    damaged = _tar_with_changed_member(data)
    bad = fresh.http.post(f"/collections/{target}/snapshots/upload", files={"snapshot": ("x.snapshot", damaged)})
    assert bad.status_code == 400 and "points.avro: SHA-256 mismatch" in bad.json()["status"]["error"], bad.text
    stats = fresh.replica.projector.stats
    events, units = stats.events_applied, stats.units_applied
    uploaded = fresh.http.post(f"/collections/{target}/snapshots/upload", params={"checksum": made.checksum},
                               files={"snapshot": (made.name, data)})
    assert uploaded.status_code == 200 and uploaded.json()["result"] is True, uploaded.text
    # create, update (the settings by level), 2 payload indexes, 2+ upserts: applied as one unit
    assert stats.events_applied - events >= 6 and stats.units_applied - units == 1
    _same(source, name, _client(fresh), target)

    # The log is the truth: a server with an empty data dir on the same topic rebuilds the collection.
    with serving(fresh.settings.replace(data_dir=tmp_path / "rebuilt")) as rebuilt:
        _same(source, name, _client(rebuilt), target)

    # A file that verifies but holds what the projection refuses is refused before anything is
    # published: the collection it would replace stays as it is.
    def scaled_cosine_row(manifest: dict[str, Any], members: dict[str, bytes]) -> None:
        stem = manifest["dense"]["cos"]
        rows = np.load(io.BytesIO(members[f"{stem}.vectors.npy"]))
        rows[0] *= 5
        out = io.BytesIO()
        np.save(out, rows)
        members[f"{stem}.vectors.npy"] = out.getvalue()

    for change, why in ((scaled_cosine_row, "not unit length"),
                        (lambda manifest, _: manifest["config"].update(kind="workspace"), "workspace"),
                        (lambda manifest, _: manifest["config"].update(m="x"), "manifest.json")):
        bad = fresh.http.post(f"/collections/{target}/snapshots/upload",
                              files={"snapshot": ("x.snapshot", _resealed(data, change))})
        assert bad.status_code == 400 and why in bad.json()["status"]["error"], bad.text
    _same(source, name, _client(fresh), target)

    # Recovery from a URL (another server's download) into an existing collection replaces it; its
    # aliases keep naming it.
    moved = _client(fresh)
    moved.update_collection_aliases([models.CreateAliasOperation(create_alias=models.CreateAlias(
        collection_name=target, alias_name=f"{target}_alias"))])
    assert moved.recover_snapshot(target, f"{server.url}/collections/{name}/snapshots/{made.name}",
                                  checksum=made.checksum, wait=True) is True
    _same(source, name, moved, target)
    assert [(a.alias_name, a.collection_name) for a in moved.get_collection_aliases(target).aliases] == \
        [(f"{target}_alias", target)]


def test_recovery_from_a_file_is_confined_to_the_snapshot_directories(server: Running, tmp_path: Path) -> None:
    client = _client(server)
    name = unique("confined")
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.EUCLID))
    client.upsert(name, [models.PointStruct(id=1, vector=[0.1, 0.2], payload={"a": 1})], wait=True)
    own = models.VectorParamsDiff(hnsw_config=models.HnswConfigDiff(m=20))  # the vector's own, beside the collection's
    client.update_collection(name, vectors_config={"": own})
    made = client.create_snapshot(name, wait=True)
    assert made is not None
    inside = artefacts.collections_root(server.settings.data_dir) / name / made.name
    outside = tmp_path / made.name
    outside.write_bytes(inside.read_bytes())
    answer = server.http.put(f"/collections/{name}_copy/snapshots/recover", json={"location": outside.as_uri()})
    assert answer.status_code == 403 and "inside the snapshots directory" in answer.json()["status"]["error"]
    answer = server.http.put(f"/collections/{name}_copy/snapshots/recover",
                             json={"location": inside.as_uri(), "checksum": "ab" * 32})
    assert answer.status_code == 400 and "checksum mismatch" in answer.json()["status"]["error"]
    # Into an existing collection of another dimension: replaced, checked against the snapshot's dimension.
    client.create_collection(f"{name}_copy", vectors_config=models.VectorParams(size=5, distance=models.Distance.DOT))
    assert client.recover_snapshot(f"{name}_copy", inside.as_uri(), checksum=made.checksum) is True
    got = client.retrieve(f"{name}_copy", [1], with_vectors=True)
    assert got[0].payload == {"a": 1}
    assert np.asarray(got[0].vector, np.float32).tobytes() == np.asarray([0.1, 0.2], np.float32).tobytes()
    before, after = client.get_collection(name).config, client.get_collection(f"{name}_copy").config
    assert (after.params, after.hnsw_config) == (before.params, before.hnsw_config)  # the settings by level too

    accepted = server.http.put(f"/collections/{name}_async/snapshots/recover", params={"wait": "false"},
                               json={"location": inside.as_uri(), "priority": "snapshot"})
    assert accepted.status_code == 202 and accepted.json()["status"] == "accepted", accepted.text  # durable in Kafka
    wait_until(lambda: client.collection_exists(f"{name}_async") and client.count(f"{name}_async").count == 1, 30,
               message="the recovery applied")

    assert client.delete_snapshot(name, made.name) is True
    assert client.list_snapshots(name) == [] and not inside.exists()
    assert server.http.delete(f"/collections/{name}/snapshots/{made.name}").status_code == 404
    assert server.http.get(f"/collections/{name}/snapshots/{made.name}").status_code == 404
    assert server.http.get(f"/collections/{name}/snapshots/..%2F..%2Fcatalog.db").status_code == 404


def test_full_snapshots_hold_every_collection(server: Running) -> None:
    client = _client(server)
    name = unique("full")
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    made = client.create_full_snapshot(wait=True)
    assert made is not None and made.name.startswith("full-snapshot-")
    assert made.name in [s.name for s in client.list_full_snapshots()]
    download = server.http.get(f"/snapshots/{made.name}")
    assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == made.checksum
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None and name in manifest.read().decode()
    assert client.delete_full_snapshot(made.name) is True
    assert made.name not in [s.name for s in client.list_full_snapshots()]
    assert server.http.delete(f"/snapshots/{made.name}").status_code == 404


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for member, body in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _resealed(data: bytes, change: Callable[[dict[str, Any], dict[str, bytes]], None]) -> bytes:
    """The snapshot ``data`` after ``change(manifest, members)``, its checksums made right again:
    a file that passes every integrity check but says something the projection refuses."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = json.loads(members.pop("manifest.json"))
    change(manifest, members)
    manifest["members"] = {name: hashlib.sha256(body).hexdigest() for name, body in members.items()}
    return _tar({"manifest.json": json.dumps(manifest).encode(), **members})


def _tar_with_changed_member(data: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    body = bytearray(members["points.avro"])
    body[-3] ^= 0xFF
    members["points.avro"] = bytes(body)
    return _tar(members)


pytestmark = pytest.mark.timeout(180)
