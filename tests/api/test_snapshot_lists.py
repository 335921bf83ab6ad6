"""A collection lists the snapshots requested for it, not every snapshot of the server (issue 13, defect 7)."""

from __future__ import annotations

import shutil
from pathlib import Path

from qdrant_client import QdrantClient, models

from consumers import snapshots
from tests.api.conftest import Running, unique


def _client(server: Running) -> QdrantClient:
    return QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)


def test_a_collection_lists_only_its_own_snapshots(server: Running) -> None:
    client = _client(server)
    a, b = unique("snap_a"), unique("snap_b")
    for name in (a, b):
        client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        client.upsert(name, [models.PointStruct(id=1, vector=[1.0, 0.5])], wait=True)
    made_a = client.create_snapshot(a, wait=True)
    assert made_a is not None
    assert made_a.name in [s.name for s in client.list_snapshots(a)]
    assert made_a.name not in [s.name for s in client.list_snapshots(b)]
    made_b = client.create_snapshot(b, wait=True)
    assert made_b is not None
    assert [s.name for s in client.list_snapshots(b)] == [made_b.name]
    assert made_b.name not in [s.name for s in client.list_snapshots(a)]
    listed = {s.name: s for s in client.list_snapshots(a)}[made_a.name]
    assert (listed.checksum, listed.size) == (made_a.checksum, made_a.size)

    # A collection created again under the same name is another collection: none of the old one's.
    client.delete_collection(a)
    client.create_collection(a, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    assert client.list_snapshots(a) == []


def test_snapshots_without_a_record_are_listed_nowhere_and_still_load(server: Running) -> None:
    """Projection snapshots (periodic ones, or the one a collection snapshot was cut from) are
    never listed as a collection's: it lists its own files (as Qdrant)."""
    client = _client(server)
    name = unique("snap_old")
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(name, [models.PointStruct(id=7, vector=[0.25, 1.0], payload={"k": "v"})], wait=True)
    made = client.create_snapshot(name, wait=True)
    assert made is not None
    path = snapshots.list_snapshots(server.settings.snapshot_dir)[0]  # the one it was cut from
    old = path.with_name(f"{path.name}-copy")  # a folder as older versions wrote it: no requested_for.json
    shutil.copytree(path, old)
    try:
        (old / snapshots.REQUESTED_FOR).unlink()
        assert snapshots.verify(old) == [] and snapshots.verify(path) == []
        assert snapshots.load(old).state.collections[name].payload_of == \
            snapshots.load(path).state.collections[name].payload_of
        assert [s.name for s in client.list_snapshots(name)] == [made.name]
    finally:
        shutil.rmtree(old)


def test_one_snapshot_can_answer_several_collections(tmp_path: Path) -> None:
    """Concurrent requests share one snapshot: its record names each collection once."""
    path = tmp_path
    assert snapshots.requested_for(path) == []
    snapshots.record_request(path, "a", 3)
    snapshots.record_request(path, "b", 9)
    snapshots.record_request(path, "a", 3)
    assert snapshots.requested_for(path) == [{"name": "a", "created_offset": 3}, {"name": "b", "created_offset": 9}]
    (path / snapshots.REQUESTED_FOR).write_text("{not json")
    assert snapshots.requested_for(path) == []
