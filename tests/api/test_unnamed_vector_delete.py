"""Deleting the only (unnamed) vector of some points, through qdrant-client, with its local mode
(Qdrant's behaviour, in process) as the oracle: the points stay, hold ``vector == {}``, are counted,
are never search hits nor usable as query examples, and get a vector back by an update or an
upsert; verify finds the projection and the log agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.api.conftest import Running, unique

pytestmark = [pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant:UserWarning")]

N = 40
VECTORS = np.random.default_rng(11).standard_normal((N, 4)).astype(np.float32)
GONE: list[m.ExtendedPointId] = [3, 17, 30]  # the points whose vector is deleted


def _records(points: list[Any]) -> list[tuple[Any, Any, Any]]:
    """(id, payload, vector) of retrieved points, dense vectors rounded to float32 precision."""
    def vector(v: Any) -> Any:
        return np.round(np.asarray(v, np.float32), 5).tolist() if isinstance(v, list) else v
    return [(p.id, p.payload, vector(p.vector)) for p in points]


def _hits(client: QdrantClient, name: str, **kwargs: Any) -> list[tuple[Any, float]]:
    return [(p.id, round(p.score, 4)) for p in client.query_points(name, limit=N, **kwargs).points]


@pytest.fixture(scope="module")
def both(clients: tuple[QdrantClient, QdrantClient]) -> Iterator[tuple[QdrantClient, QdrantClient, str]]:
    """The same collection, its payload field indexed, on both sides, with ``GONE``'s vectors deleted."""
    ours, local = clients
    name = unique("unnamed_del")
    points = [m.PointStruct(id=i, vector=VECTORS[i].tolist(), payload={"k": i % 3}) for i in range(N)]
    for client in (ours, local):
        client.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT))
        client.create_payload_index(name, "k", m.PayloadSchemaType.INTEGER, wait=True)
        client.upsert(name, points, wait=True)
        result = client.delete_vectors(name, vectors=[""], points=GONE, wait=True)
        assert result.status == m.UpdateStatus.COMPLETED
    yield ours, local, name


def test_points_without_their_vector_read_as_in_qdrant(both: tuple[QdrantClient, QdrantClient, str],
                                                       server: Running) -> None:
    ours, local, name = both
    for client in (ours, local):
        assert [p.vector for p in client.retrieve(name, GONE, with_vectors=True)] == [{}, {}, {}]
    for with_vectors in (True, [""], False):
        assert _records(ours.retrieve(name, [1, 3, 17, 2], with_vectors=with_vectors)) == \
            _records(local.retrieve(name, [1, 3, 17, 2], with_vectors=with_vectors))
        assert _records(ours.scroll(name, limit=N, with_vectors=with_vectors)[0]) == \
            _records(local.scroll(name, limit=N, with_vectors=with_vectors)[0])
    over_grpc = QdrantClient(host="127.0.0.1", port=server.settings.http_port, grpc_port=server.grpc_port,
                             prefer_grpc=True, timeout=60, check_compatibility=False)
    try:
        assert _records(over_grpc.retrieve(name, [1, 3], with_vectors=True)) == \
            _records(local.retrieve(name, [1, 3], with_vectors=True))
    finally:
        over_grpc.close()
    assert ours.count(name).count == local.count(name).count == N
    held = m.Filter(must=[m.HasVectorCondition(has_vector="")])
    assert ours.count(name, count_filter=held).count == local.count(name, count_filter=held).count == N - len(GONE)


def test_searches_skip_points_without_their_vector(both: tuple[QdrantClient, QdrantClient, str],
                                                   server: Running) -> None:
    ours, local, name = both
    query = VECTORS[3].tolist()  # the deleted vector itself: its point would be the best hit
    indexed = m.Filter(must=[m.FieldCondition(key="k", match=m.MatchValue(value=0))])  # answered by the index
    scanned = m.Filter(must_not=[m.HasIdCondition(has_id=[1])])  # an exact scan of the matches
    for kwargs in ({}, {"search_params": m.SearchParams(exact=True)}, {"query_filter": indexed},
                   {"query_filter": indexed, "search_params": m.SearchParams(exact=True)},
                   {"query_filter": scanned}):
        expected = _hits(local, name, query=query, **kwargs)
        assert not {3, 17, 30} & {pid for pid, _ in expected}
        assert _hits(ours, name, query=query, **kwargs) == expected, kwargs
    recommend = m.RecommendQuery(recommend=m.RecommendInput(positive=[1], negative=[2]))
    assert _hits(ours, name, query=recommend) == _hits(local, name, query=recommend)
    best = m.RecommendQuery(recommend=m.RecommendInput(positive=[1], strategy=m.RecommendStrategy.BEST_SCORE))
    assert _hits(ours, name, query=best) == _hits(local, name, query=best)
    raw = server.http.post(f"/collections/{name}/points/search",
                           json={"vector": query, "limit": N, "params": {"exact": True}, "with_vector": True})
    assert raw.status_code == 200 and not {3, 17, 30} & {hit["id"] for hit in raw.json()["result"]}

    # A point without the vector is no query example: Qdrant answers 404 (local mode raises).
    for example in (3, m.RecommendQuery(recommend=m.RecommendInput(positive=[1, 17]))):
        with pytest.raises(ValueError, match="Vector with name"):
            local.query_points(name, query=example)
        with pytest.raises(UnexpectedResponse) as refused:
            ours.query_points(name, query=example)
        assert refused.value.status_code == 404
        assert json.loads(refused.value.content)["status"]["error"] == \
            'Not found: Vector with name "" for point not found'  # Qdrant's words (collection_query.rs)


def test_a_vector_given_back_is_searched_and_verify_agrees(both: tuple[QdrantClient, QdrantClient, str],
                                                           server: Running) -> None:
    ours, local, name = both
    query = VECTORS[3].tolist()
    for client in (ours, local):
        client.update_vectors(name, [m.PointVectors(id=3, vector=query)], wait=True)
        client.upsert(name, [m.PointStruct(id=17, vector=VECTORS[17].tolist(), payload={"k": 2})], wait=True)
    assert _records(ours.retrieve(name, [3, 17, 30], with_vectors=True)) == \
        _records(local.retrieve(name, [3, 17, 30], with_vectors=True))
    for kwargs in ({}, {"search_params": m.SearchParams(exact=True)}):
        expected = _hits(local, name, query=query, **kwargs)
        assert {3, 17} <= {pid for pid, _ in expected}
        assert _hits(ours, name, query=query, **kwargs) == expected

    report = server.http.post("/vectorizer/verify", params={"collection": name}).json()["result"]
    assert report["ok"] is True and report["problems"] == []
