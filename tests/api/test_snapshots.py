"""POST/GET /collections/{c}/snapshots, through qdrant-client and raw HTTP."""

from __future__ import annotations

from qdrant_client import QdrantClient, models

from consumers import snapshots
from tests.api.conftest import Running, unique


def test_snapshot_over_http_is_written_verified_and_listed(server: Running) -> None:
    name = unique("snap")
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    client.create_collection(name, vectors_config=models.VectorParams(size=3, distance=models.Distance.DOT))
    client.upsert(name, [models.PointStruct(id=i, vector=[i, 1.0, 0.5], payload={"i": i}) for i in range(20)],
                  wait=True)
    before = {p.name for p in snapshots.list_snapshots(server.settings.snapshot_dir)}
    created = client.create_snapshot(name, wait=True)
    assert created is not None and created.name not in before
    path = server.settings.snapshot_dir / created.name
    assert snapshots.verify(path) == []
    manifest = snapshots.read_manifest(path)
    assert any(c["config"]["name"] == name and c["count"] == 20 for c in manifest["collections"])
    # The snapshot's own files (the side record of who requested it is not part of it).
    assert created.size == sum((path / f).stat().st_size for f in ("manifest.json", *manifest["files"]))
    assert created.size == sum(f.stat().st_size for f in path.iterdir() if f.name != snapshots.REQUESTED_FOR)
    listed = client.list_snapshots(name)
    assert created.name in [s.name for s in listed]
    assert server.http.post("/collections/nope_missing/snapshots").status_code == 404
    assert server.http.get("/collections/nope_missing/snapshots").status_code == 404
