"""Scalar int8 quantization through qdrant-client: created, shown, searched with Qdrant's
``params.quantization``, and recovered after a restart from its snapshot and the log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m

from infra.settings import Settings
from projections.index import quantized
from projections.index.quantized import QuantizedGraph
from tests.api.conftest import Running, serving, unique

DIM, N = 24, 6000


def _points(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIM)).astype(np.float32)
    return (centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, DIM))).astype(np.float32)


def test_scalar_int8_collection_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Segments of 2,500 labels: two are quantized (past TRAIN_AT), the last is searched exactly.
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('int8')}", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0, segment_bytes=2500 * DIM * 4)
    with serving(settings) as server:
        before, config, name = _load_and_search(server)
    with serving(settings) as restarted:  # from its snapshot (int8 graphs, their maps, float32 rows) and the log
        again = QdrantClient(url=restarted.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        assert restarted.replica.projector.stats.loaded_snapshot is not None
        assert again.count(name, exact=True).count == N - 300
        assert [[int(p.id) for p in again.query_points(name, query=q.tolist(), limit=10).points]
                for q in _points(30, seed=5)] == before
        assert again.get_collection(name).config.quantization_config == config


def _load_and_search(server: Running) -> tuple[list[list[int]], m.ScalarQuantization, str]:
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    name = unique("int8")
    config = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99,
                                                                     always_ram=True))
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE),
                             quantization_config=config)
    info = client.get_collection(name)
    assert info.config.quantization_config == config
    vectors = _points(N)
    for s in range(0, N, 1000):
        client.upsert(name, m.Batch(ids=list(range(s, s + 1000)), vectors=vectors[s:s + 1000].tolist(),
                                    payloads=[{"g": i % 3} for i in range(s, s + 1000)]), wait=True)
    coll = server.replica.projector.state.get(name)
    assert coll is not None
    graphs = [seg.graph for seg in coll.index.segments]
    assert len(graphs) == 3 and all(isinstance(g, QuantizedGraph) for g in graphs)
    assert [g.index is not None for g in graphs if isinstance(g, QuantizedGraph)] == [True, True, False]
    assert quantized.TRAIN_AT < 2500

    queries = _points(30, seed=5)

    def top(q: np.ndarray, params: m.QuantizationSearchParams | None = None) -> list[int]:
        search = m.SearchParams(quantization=params) if params else None
        return [int(p.id) for p in client.query_points(name, query=q.tolist(), limit=10, search_params=search).points]

    exact = [[int(p.id) for p in client.query_points(name, query=q.tolist(), limit=10,
                                                       search_params=m.SearchParams(exact=True)).points]
             for q in queries]
    recall = np.mean([len(set(top(q)) & set(t)) / 10 for q, t in zip(queries, exact, strict=True)])
    assert recall >= 0.95
    assert [top(q, m.QuantizationSearchParams(ignore=True)) for q in queries] == exact  # the float32 vectors only
    assert np.mean([len(set(top(q, m.QuantizationSearchParams(rescore=True, oversampling=4.0))) & set(t)) / 10
                    for q, t in zip(queries, exact, strict=True)]) >= recall - 0.01
    got = client.retrieve(name, [7], with_vectors=True)[0].vector
    assert isinstance(got, list)
    assert np.allclose(np.array(got), vectors[7] / np.linalg.norm(vectors[7]), atol=1e-6)  # float32, not int8
    filtered = client.query_points(name, query=queries[0].tolist(), limit=10,
                                   query_filter=m.Filter(must=[m.FieldCondition(key="g", match=m.MatchValue(value=1))]),
                                   with_payload=True).points
    assert len(filtered) == 10 and all(p.payload == {"g": 1} for p in filtered)
    r = server.http.post(f"/collections/{name}/points/query",
                         json={"query": [0.0] * DIM, "params": {"quantization": {"oversampling": 0.5}}})
    assert r.status_code == 422 and "oversampling" in r.json()["status"]["error"]

    client.delete(name, m.PointIdsList(points=list(range(0, 300))), wait=True)
    before = [top(q) for q in queries]
    assert server.replica.projector.request_snapshot(30) is not None
    return before, config, name
