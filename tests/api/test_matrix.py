"""The distance matrix routes (``/points/search/matrix/pairs`` and ``/offsets``) through qdrant-client,
with its local mode as the oracle: the same collection on both sides, ``sample`` at least the
number of matching points so both sample the same set, then the answers must match (ids, pairs
in order, scores within 1e-4). Data is seeded random floats: no ties. Errors are compared with
the status codes Qdrant's REST API gives (``SearchMatrixRequestInternal``'s validation: 422).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m

from tests.api.conftest import Running, unique

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")

N = 40
TOL = 1e-4
DISTANCES = (m.Distance.COSINE, m.Distance.EUCLID, m.Distance.DOT, m.Distance.MANHATTAN)


def _id(i: int) -> int | str:
    return i if i % 3 else str(uuid.UUID(int=i + 1))  # integer and UUID ids: the sort order mixes both


def _points(seed: int, dim: int) -> list[m.PointStruct]:
    rng = np.random.default_rng(seed)
    return [m.PointStruct(id=_id(i), vector=rng.normal(size=dim).astype(np.float32).tolist(),
                          payload={"even": i % 2 == 0}) for i in range(N)]


def _both(clients: tuple[QdrantClient, QdrantClient], vectors: Any, points: list[m.PointStruct]) -> str:
    name = unique("matrix")
    for client in clients:
        client.create_collection(name, vectors_config=vectors)
        client.upsert(name, points, wait=True)
    return name


def _same_pairs(got: m.SearchMatrixPairsResponse, want: m.SearchMatrixPairsResponse) -> None:
    assert [(p.a, p.b) for p in got.pairs] == [(p.a, p.b) for p in want.pairs]
    assert np.allclose([p.score for p in got.pairs], [p.score for p in want.pairs], rtol=TOL, atol=TOL)


def _same_offsets(got: m.SearchMatrixOffsetsResponse, want: m.SearchMatrixOffsetsResponse) -> None:
    assert got.ids == want.ids
    assert (got.offsets_row, got.offsets_col) == (want.offsets_row, want.offsets_col)
    assert np.allclose(got.scores, want.scores, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("distance", DISTANCES)
def test_matrix_matches_local_mode_for_each_metric(clients: tuple[QdrantClient, QdrantClient],
                                                   distance: m.Distance) -> None:
    ours, local = clients
    name = _both(clients, m.VectorParams(size=6, distance=distance), _points(7, 6))
    even = m.Filter(must=[m.FieldCondition(key="even", match=m.MatchValue(value=True))])
    for flt, limit in ((None, 3), (even, 5), (None, N + 5)):
        kwargs: dict[str, Any] = {"query_filter": flt, "sample": N, "limit": limit}
        got, want = ours.search_matrix_pairs(name, **kwargs), local.search_matrix_pairs(name, **kwargs)
        assert len(want.pairs) > 0
        _same_pairs(got, want)
        _same_offsets(ours.search_matrix_offsets(name, **kwargs), local.search_matrix_offsets(name, **kwargs))
    got_even = ours.search_matrix_offsets(name, query_filter=even, sample=N)
    assert len(got_even.ids) == N // 2


def test_matrix_with_named_and_sparse_vectors(clients: tuple[QdrantClient, QdrantClient]) -> None:
    ours, local = clients
    names = ("a", "b")
    vectors = {"a": m.VectorParams(size=4, distance=m.Distance.DOT),
               "b": m.VectorParams(size=5, distance=m.Distance.EUCLID)}
    name = unique("matrix")
    for client in clients:
        client.create_collection(name, vectors_config=vectors, sparse_vectors_config={"s": m.SparseVectorParams()})
        client.upsert(name, _named_points(names), wait=True)
    for using in (*names, "s"):  # "b" is missing from every fourth point: those are not sampled
        kwargs: dict[str, Any] = {"sample": N, "limit": 4, "using": using}
        _same_pairs(ours.search_matrix_pairs(name, **kwargs), local.search_matrix_pairs(name, **kwargs))
        got, want = ours.search_matrix_offsets(name, **kwargs), local.search_matrix_offsets(name, **kwargs)
        _same_offsets(got, want)
    assert len(ours.search_matrix_offsets(name, sample=N, using="b").ids) == N - N // 4


def _named_points(names: tuple[str, ...]) -> list[m.PointStruct]:
    rng = np.random.default_rng(8)
    sizes = {"a": 4, "b": 5}
    out = []
    for i in range(N):
        vector: dict[str, Any] = {n: rng.normal(size=sizes[n]).astype(np.float32).tolist()
                                  for n in names if i % 4 or n != "b"}
        indices = sorted(rng.choice(12, size=4, replace=False).tolist())
        vector["s"] = m.SparseVector(indices=indices, values=rng.random(4).astype(np.float32).tolist())
        out.append(m.PointStruct(id=_id(i), vector=vector))
    return out


def test_sample_is_random_and_bounded(clients: tuple[QdrantClient, QdrantClient]) -> None:
    ours, _ = clients
    name = _both(clients, m.VectorParams(size=3, distance=m.Distance.COSINE), _points(9, 3))
    seen: set[Any] = set()
    for _ in range(5):
        got = ours.search_matrix_offsets(name, sample=5, limit=2)
        assert len(got.ids) == 5 and len(got.scores) == 10
        seen |= set(got.ids)
    assert len(seen) > 5  # five samples of 5 out of 40 are not all the same set
    default = ours.search_matrix_pairs(name)  # sample 10, limit 3
    assert len(default.pairs) == 30
    lonely = ours.search_matrix_pairs(name, query_filter=m.Filter(must=[m.HasIdCondition(has_id=[1])]))
    assert lonely.pairs == []  # one point: no matrix, as Qdrant


def test_a_matrix_waits_for_its_consistency_token(server: Running, small: str) -> None:
    r = server.http.put(f"/collections/{small}/points", json={"points": [{"id": 99, "vector": [5, 5]}]})
    token = r.json()["result"]["write_token"]  # acknowledged, maybe not applied yet
    got = server.http.post(f"/collections/{small}/points/search/matrix/offsets", params={"consistency": token},
                           json={"sample": 100, "limit": 1}).json()["result"]
    assert 99 in got["ids"] and len(got["ids"]) == 5


@pytest.fixture(scope="module")
def small(clients: tuple[QdrantClient, QdrantClient]) -> str:
    return _both(clients, m.VectorParams(size=2, distance=m.Distance.DOT), _points(3, 2)[:4])


@pytest.mark.parametrize(("body", "status"), [
    ({"sample": 0}, 422), ({"sample": 1}, 422), ({"limit": 0}, 422), ({"sample": -1}, 400),
    ({"sample": "ten"}, 400), ({"using": "nope"}, 400), ({"filter": {"must": [{"bad": 1}]}}, 400),
    ({"nonsense": 1}, 400), ({"sample": 2, "limit": 1}, 200)])
def test_errors_have_qdrants_status(server: Running, small: str, body: dict[str, Any], status: int) -> None:
    name = small
    for route in ("pairs", "offsets"):
        r = server.http.post(f"/collections/{name}/points/search/matrix/{route}", json=body)
        assert r.status_code == status, r.text
        if status == 400 and "using" in body:
            assert "Not existing vector name" in r.text
    r = server.http.post(f"/collections/{unique('none')}/points/search/matrix/pairs", json={})
    assert r.status_code == 404
