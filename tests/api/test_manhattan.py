"""Qdrant's ``Manhattan`` distance through qdrant-client, with local mode as the oracle.

A small collection (searched exactly) must answer as local mode does: ids in order, scores
(L1 distances, smaller is better) within 1e-4, under filters, ``score_threshold`` (a hit must be
strictly closer than it) and recommend (average vector, best score). A collection past the
training size walks faiss's L1 graph (``IndexHNSWFlat``): its hits must be nearly those of exact
search (recall) with exact scores, and come back the same from a snapshot after a restart.
Scalar quantization of a Manhattan vector is refused (faiss has no L1 quantizer), at creation
and by ``PATCH``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from infra.settings import Settings
from projections.index.quantized import TRAIN_AT, QuantizedGraph
from tests.api.conftest import Running, serving, unique

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")

N, DIM = 150, 6
BIG = TRAIN_AT + 400  # past the training size: the segment's faiss graph is built
TOL = 1e-4
L1 = m.Distance.MANHATTAN
INT8 = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8))


def _rows(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _points(rows: np.ndarray, named: bool = False) -> list[m.PointStruct]:
    def vector(i: int) -> Any:
        return {"l1": rows[i].tolist(), "cos": rows[i][::-1].tolist()} if named else rows[i].tolist()
    return [m.PointStruct(id=i, vector=vector(i), payload={"group": i % 3}) for i in range(len(rows))]


def _same(got: list[m.ScoredPoint], want: list[m.ScoredPoint]) -> None:
    assert [p.id for p in got] == [p.id for p in want]
    assert np.allclose([p.score for p in got], [p.score for p in want], rtol=TOL, atol=TOL)


@pytest.fixture(scope="module")
def small(clients: tuple[QdrantClient, QdrantClient]) -> str:
    name = unique("l1")
    for client in clients:
        client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=L1))
        client.upsert(name, _points(_rows(N, 1)), wait=True)
    return name


def test_queries_filters_and_thresholds_match_local_mode(clients: tuple[QdrantClient, QdrantClient],
                                                         small: str) -> None:
    ours, local = clients
    assert ours.get_collection(small).config.params.vectors.distance == L1  # type: ignore[union-attr]
    group = m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value=1))])
    for seed in range(3):
        q = _rows(1, 100 + seed)[0].tolist()
        want = local.query_points(small, query=q, limit=10).points
        assert want[0].score < want[-1].score  # a distance: the nearest first
        _same(ours.query_points(small, query=q, limit=10).points, want)
        _same(ours.query_points(small, query=q, limit=7, query_filter=group).points,
              local.query_points(small, query=q, limit=7, query_filter=group).points)
        threshold = (want[3].score + want[4].score) / 2
        got = ours.query_points(small, query=q, limit=10, score_threshold=threshold).points
        _same(got, local.query_points(small, query=q, limit=10, score_threshold=threshold).points)
        assert len(got) == 4
    exact = m.SearchParams(exact=True)
    q = _rows(1, 7)[0].tolist()
    _same(ours.query_points(small, query=q, limit=5, search_params=exact).points,
          local.query_points(small, query=q, limit=5).points)


@pytest.mark.parametrize("strategy", [m.RecommendStrategy.AVERAGE_VECTOR, m.RecommendStrategy.BEST_SCORE,
                                      m.RecommendStrategy.SUM_SCORES])
def test_recommend_matches_local_mode(clients: tuple[QdrantClient, QdrantClient], small: str,
                                      strategy: m.RecommendStrategy) -> None:
    ours, local = clients
    query = m.RecommendQuery(recommend=m.RecommendInput(positive=[3, 10], negative=[7], strategy=strategy))
    _same(ours.query_points(small, query=query, limit=8).points, local.query_points(small, query=query, limit=8).points)


def test_discover_and_context_match_local_mode(clients: tuple[QdrantClient, QdrantClient], small: str) -> None:
    ours, local = clients  # both score by Qdrant's internal similarity, -L1
    pairs = [m.ContextPair(positive=1, negative=2), m.ContextPair(positive=4, negative=8)]
    for query in (m.DiscoverQuery(discover=m.DiscoverInput(target=11, context=pairs)),
                  m.ContextQuery(context=pairs)):
        got, want = ours.query_points(small, query=query, limit=N).points, \
            local.query_points(small, query=query, limit=N).points
        assert np.allclose([p.score for p in got], [p.score for p in want], atol=TOL)
        # context scores tie (0 for every point inside the context), discover's ranks too: within a run
        # of equal scores the order is unspecified, so runs are compared as sets (limit N: none is cut)
        starts = [0] + [i for i in range(1, len(want)) if abs(want[i].score - want[i - 1].score) > TOL] + [len(want)]
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            assert {p.id for p in got[a:b]} == {p.id for p in want[a:b]}


def test_named_manhattan_vector_matches_local_mode(clients: tuple[QdrantClient, QdrantClient]) -> None:
    ours, local = clients
    name = unique("l1named")
    for client in clients:
        client.create_collection(name, vectors_config={"l1": m.VectorParams(size=DIM, distance=L1),
                                                       "cos": m.VectorParams(size=DIM, distance=m.Distance.COSINE)})
        client.upsert(name, _points(_rows(60, 2), named=True), wait=True)
    q = _rows(1, 3)[0].tolist()
    for using in ("l1", "cos"):
        _same(ours.query_points(name, query=q, using=using, limit=6).points,
              local.query_points(name, query=q, using=using, limit=6).points)
    pairs = ours.search_matrix_pairs(name, sample=60, limit=2, using="l1")
    want = local.search_matrix_pairs(name, sample=60, limit=2, using="l1")
    assert [(p.a, p.b) for p in pairs.pairs] == [(p.a, p.b) for p in want.pairs]
    assert np.allclose([p.score for p in pairs.pairs], [p.score for p in want.pairs], atol=TOL)


def test_quantized_manhattan_is_refused(clients: tuple[QdrantClient, QdrantClient], server: Running) -> None:
    ours, _ = clients
    for vectors, quantization in ((m.VectorParams(size=4, distance=L1, quantization_config=INT8), None),
                                  (m.VectorParams(size=4, distance=L1), INT8),
                                  ({"a": m.VectorParams(size=4, distance=L1, quantization_config=INT8)}, None)):
        with pytest.raises(UnexpectedResponse) as refused:
            ours.create_collection(unique("l1q"), vectors_config=vectors, quantization_config=quantization)
        assert refused.value.status_code == 400 and "Manhattan" in str(refused.value.content)
    name = unique("l1p")
    ours.create_collection(name, vectors_config=m.VectorParams(size=4, distance=L1, on_disk=True))
    r = server.http.patch(f"/collections/{name}", json={"quantization_config": INT8.model_dump(exclude_none=True)})
    assert r.status_code == 400 and "Manhattan" in r.text, r.text
    assert ours.get_collection(name).config.quantization_config is None


def _truth(base: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.abs(base - q).sum(axis=1)
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


def test_the_l1_graph_finds_the_nearest_and_comes_back_from_a_snapshot(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('l1snap')}", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    base, queries, name = _rows(BIG, 5, 8), _rows(20, 6, 8), unique("l1big")
    with serving(settings) as server:
        client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        client.create_collection(name, vectors_config=m.VectorParams(size=8, distance=L1))
        for s in range(0, BIG, 1000):
            client.upsert(name, m.Batch(ids=list(range(s, min(BIG, s + 1000))), vectors=base[s:s + 1000].tolist()),
                          wait=True)
        client.delete(name, points_selector=m.PointIdsList(points=[0, 1]), wait=True)
        coll = server.replica.projector.state.get(name)
        assert coll is not None
        graphs = [seg.graph for seg in coll.index.segments]
        assert all(isinstance(g, QuantizedGraph) and g.engine == "faiss-flat" and g.index is not None for g in graphs)
        before, found = [], 0
        for q in queries:
            hits = client.query_points(name, query=q.tolist(), limit=10).points
            ids, dist = _truth(base[2:], q, 10)
            found += len({p.id for p in hits} & set((ids + 2).tolist()))
            for p in hits:  # every score is the point's exact L1 distance
                assert abs(p.score - float(np.abs(base[int(p.id)] - q).sum())) < TOL
            before.append([(p.id, p.score) for p in hits])
        assert found / (10 * len(queries)) >= 0.95
        assert server.replica.projector.request_snapshot(60) is not None

    with serving(settings) as restarted:  # the graph loads from the snapshot's faiss file
        client = QdrantClient(url=restarted.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        coll = restarted.replica.projector.state.get(name)
        assert coll is not None
        assert all(isinstance(seg.graph, QuantizedGraph) and seg.graph.index is not None
                   for seg in coll.index.segments)
        after = [[(p.id, p.score) for p in client.query_points(name, query=q.tolist(), limit=10).points]
                 for q in queries]
        assert after == before
        assert client.count(name, exact=True).count == BIG - 2
        got = client.retrieve(name, ids=[5], with_vectors=True)[0].vector
        assert np.allclose(np.asarray(got, np.float32), base[5])
