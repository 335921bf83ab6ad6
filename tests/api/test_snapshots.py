"""POST/GET /collections/{c}/snapshots, through qdrant-client and raw HTTP."""

from __future__ import annotations

import json
import tarfile

from qdrant_client import QdrantClient, models

from consumers import artefacts, snapshots
from tests.api.conftest import Running, unique


def test_snapshot_over_http_is_written_verified_and_listed(server: Running) -> None:
    name = unique("snap")
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    client.create_collection(name, vectors_config=models.VectorParams(size=3, distance=models.Distance.DOT))
    client.upsert(name, [models.PointStruct(id=i, vector=[i, 1.0, 0.5], payload={"i": i}) for i in range(20)],
                  wait=True)
    before = {p.name for p in snapshots.list_snapshots(server.settings.snapshot_dir)}
    created = client.create_snapshot(name, wait=True)
    assert created is not None
    # The answer describes the collection's own file, as Qdrant's: its size and SHA-256.
    file = artefacts.collections_root(server.settings.data_dir) / name / created.name
    assert created.size == file.stat().st_size and created.checksum == artefacts.sha256_of(file)
    # It was cut from a projection snapshot written for the request, verified, holding the collection.
    with tarfile.open(file) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        cut = json.loads(member.read())
    path = server.settings.snapshot_dir / cut["snapshot_id"]
    assert path.name not in before and snapshots.verify(path) == []
    manifest = snapshots.read_manifest(path)
    assert any(c["config"]["name"] == name and c["count"] == 20 for c in manifest["collections"])
    assert cut["offsets"] == manifest["offsets"] and cut["count"] == 20
    listed = client.list_snapshots(name)
    assert created.name in [s.name for s in listed]
    assert server.http.post("/collections/nope_missing/snapshots").status_code == 404
    assert server.http.get("/collections/nope_missing/snapshots").status_code == 404
