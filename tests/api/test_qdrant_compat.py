"""qdrant-client against this server, over REST and over gRPC (``prefer_grpc=True``), and against
its own local mode, same operations.

Every answer is compared: collection info, counts, scroll pages, retrieved payloads and
vectors, and filtered query results (ids, and scores within 1e-4). The data is small and
queries use a search breadth above the point count, so HNSW answers exactly.
"""

from __future__ import annotations

import importlib.metadata
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.common.version_check import get_server_version, is_compatible

from tests.api.conftest import Running, unique

DIM = 8
N = 150
SCORE_TOL = 1e-4


@pytest.fixture(scope="module", params=["rest", "grpc"])
def remote(request: pytest.FixtureRequest, server: Running) -> Iterator[QdrantClient]:
    """qdrant-client on the server, unmodified: REST, or gRPC for every call it makes over gRPC."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. the version check's "incompatible server" warning
        client = QdrantClient(host="127.0.0.1", port=server.settings.http_port, grpc_port=server.grpc_port,
                              prefer_grpc=request.param == "grpc", timeout=60, check_compatibility=False)
    yield client
    client.close()


def test_version_check_accepts_the_server(server: Running) -> None:
    version = get_server_version(server.url, {}, None, 10)
    assert version is not None
    assert is_compatible(importlib.metadata.version("qdrant-client"), version)


def _ids() -> list[Any]:
    """Even integers, then UUIDs: Qdrant's scroll order puts integers first."""
    return [*range(0, 240, 2)][: N - 30] + [str(uuid.uuid5(uuid.NAMESPACE_OID, f"p{i}")) for i in range(30)]


def _payload(i: int, rng: np.random.Generator) -> dict[str, Any] | None:
    if i % 17 == 0:
        return None
    payload: dict[str, Any] = {
        "n": i,
        "group": "abc"[i % 3],
        "tags": [t for t in ("red", "green", "blue") if rng.random() < 0.5],
        "price": round(float(rng.random() * 100), 3),
        "flag": bool(i % 2),
        "meta": {"color": ["red", "green"][i % 2], "size": int(rng.integers(0, 10))},
    }
    if i % 5 == 0:
        payload["opt"] = None
    if i % 7 == 0:
        payload["empty"] = []
    return payload


FILTERS: list[m.Filter | None] = [
    None,
    m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value="a"))]),
    m.Filter(must=[m.FieldCondition(key="tags", match=m.MatchAny(any=["red", "blue"]))],
             must_not=[m.FieldCondition(key="flag", match=m.MatchValue(value=True))]),
    m.Filter(must=[m.FieldCondition(key="price", range=m.Range(gte=20.0, lt=70.0))]),
    m.Filter(should=[m.FieldCondition(key="meta.color", match=m.MatchValue(value="red")),
                     m.FieldCondition(key="meta.size", range=m.Range(gt=7))]),
    m.Filter(must=[m.IsEmptyCondition(is_empty=m.PayloadField(key="tags"))]),
    m.Filter(must=[m.IsNullCondition(is_null=m.PayloadField(key="opt"))]),
    m.Filter(must=[m.HasIdCondition(has_id=[0, 2, 4, 6, 8, 10, 12, str(uuid.uuid5(uuid.NAMESPACE_OID, "p3"))])]),
    m.Filter(must=[m.FieldCondition(key="group", match=m.MatchExcept(**{"except": ["a", "b"]}))]),
]


def _apply(client: QdrantClient, name: str, distance: m.Distance) -> None:
    """The same history for both clients: creates, upserts, replaces, deletes, payload edits."""
    rng = np.random.default_rng(42)
    ids = _ids()
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    payloads = [_payload(i, rng) for i in range(N)]
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=distance),
                             hnsw_config=m.HnswConfigDiff(m=16, ef_construct=100))
    client.upsert(name, [m.PointStruct(id=ids[i], vector=vectors[i].tolist(), payload=payloads[i])
                         for i in range(100)])
    client.upsert(name, m.Batch(ids=ids[100:], vectors=vectors[100:].tolist(),
                                payloads=[p or {} for p in payloads[100:]]))
    replaced = [ids[i] for i in range(0, 100, 10)]
    client.upsert(name, [m.PointStruct(id=pid, vector=rng.normal(size=DIM).tolist(), payload={"replaced": True,
                                                                                                "group": "b"})
                         for pid in replaced])
    client.upsert(name, [m.PointStruct(id=ids[20], vector=rng.normal(size=DIM).tolist(), payload={"twice": 1}),
                         m.PointStruct(id=ids[20], vector=rng.normal(size=DIM).tolist(), payload={"twice": 2})])
    client.delete(name, m.PointIdsList(points=[ids[3], ids[5], ids[120], 999_999]))
    client.delete(name, m.FilterSelector(filter=m.Filter(must=[
        m.FieldCondition(key="group", match=m.MatchValue(value="c")),
        m.FieldCondition(key="n", range=m.Range(gt=100))])))
    client.set_payload(name, {"extra": 1, "meta": {"color": "blue"}}, points=[ids[1], ids[2], ids[130]])
    client.set_payload(name, {"bulk": "yes"}, points=m.Filter(must=[m.FieldCondition(
        key="meta.size", range=m.Range(lte=2))]))
    client.set_payload(name, {"shade": "dark"}, points=[ids[4], ids[7]], key="meta")
    client.overwrite_payload(name, {"only": True, "group": "a"}, points=[ids[8], ids[9]])
    client.delete_payload(name, ["price", "meta.size"], points=[ids[11], ids[12], ids[141]])
    client.clear_payload(name, m.FilterSelector(filter=m.Filter(must=[m.HasIdCondition(has_id=[ids[13], ids[14]])])))


@pytest.fixture(scope="module", params=[m.Distance.COSINE, m.Distance.EUCLID, m.Distance.DOT])
def pair(request: pytest.FixtureRequest, remote: QdrantClient) -> Iterator[tuple[QdrantClient, QdrantClient, str]]:
    local = QdrantClient(":memory:")
    name = unique(f"compat_{request.param.value.lower()}")
    for client in (remote, local):
        _apply(client, name, request.param)
    yield remote, local, name
    local.close()


def _records(records: list[Any]) -> list[tuple[Any, Any, Any]]:
    return [(r.id, r.payload, r.vector) for r in records]


def over_grpc(client: QdrantClient) -> bool:
    return bool(client.init_options.get("prefer_grpc"))


def assert_same_records(ours: list[Any], theirs: list[Any], grpc: bool = False) -> None:
    """``grpc``: qdrant-client reads a record's empty payload map as ``{}`` (from Qdrant too), where
    local mode and REST say ``None`` for a payload not asked for."""
    assert [r.id for r in ours] == [r.id for r in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a.payload == ({} if grpc and b.payload is None else b.payload), a.id
        if b.vector is None:
            assert a.vector is None
        else:
            np.testing.assert_allclose(np.asarray(a.vector), np.asarray(b.vector), atol=SCORE_TOL,
                                       err_msg=str(a.id))


def assert_same_hits(ours: list[m.ScoredPoint], theirs: list[m.ScoredPoint], grpc: bool = False) -> None:
    """Same ids in the same order (neighbours whose scores tie may swap), same scores and payloads.
    ``grpc``: qdrant-client reads a hit's empty payload map as ``None`` (from Qdrant too)."""
    assert len(ours) == len(theirs), ([h.id for h in ours], [h.id for h in theirs])
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert abs(a.score - b.score) <= SCORE_TOL, (i, a, b)
        if a.id != b.id:
            tied = [h.id for h in theirs if abs(h.score - a.score) <= SCORE_TOL]
            assert a.id in tied, (i, [h.id for h in ours], [h.id for h in theirs])
    by_id = {h.id: h for h in theirs}
    for a in ours:
        expected = by_id[a.id].payload
        assert a.payload == (None if grpc and expected == {} else expected), a.id


def test_collection_info_and_counts(pair: tuple[QdrantClient, QdrantClient, str]) -> None:
    remote, local, name = pair
    ours, theirs = remote.get_collection(name), local.get_collection(name)
    assert ours.points_count == theirs.points_count
    assert ours.config.params.vectors == theirs.config.params.vectors
    assert name in {c.name for c in remote.get_collections().collections}
    assert remote.collection_exists(name) and not remote.collection_exists(name + "_missing")
    for flt in FILTERS:
        assert remote.count(name, count_filter=flt, exact=True).count == \
            local.count(name, count_filter=flt, exact=True).count, flt


def test_scroll_pages(pair: tuple[QdrantClient, QdrantClient, str]) -> None:
    remote, local, name = pair
    for flt, with_vectors in ((None, False), (FILTERS[1], True), (FILTERS[4], False), (FILTERS[7], True)):
        offsets: tuple[Any, Any] = (None, None)
        pages = 0
        while True:
            ours, next_ours = remote.scroll(name, scroll_filter=flt, limit=7, offset=offsets[0],
                                            with_vectors=with_vectors)
            theirs, next_theirs = local.scroll(name, scroll_filter=flt, limit=7, offset=offsets[1],
                                               with_vectors=with_vectors)
            assert_same_records(ours, theirs, over_grpc(remote))
            assert next_ours == next_theirs
            pages += 1
            if next_ours is None:
                break
            offsets = (next_ours, next_theirs)
        assert pages > 1 or flt is not None


def test_retrieve_payloads_and_vectors(pair: tuple[QdrantClient, QdrantClient, str]) -> None:
    remote, local, name = pair
    ids = _ids()
    wanted = [ids[i] for i in (0, 1, 3, 4, 8, 11, 13, 20, 101, 145)] + [123_456]
    assert_same_records(remote.retrieve(name, wanted, with_vectors=True), local.retrieve(name, wanted,
                                                                                        with_vectors=True))
    for selector in (["group", "meta.color"], m.PayloadSelectorExclude(exclude=["tags", "meta.size"]), False):
        assert_same_records(remote.retrieve(name, wanted, with_payload=selector),
                            local.retrieve(name, wanted, with_payload=selector), over_grpc(remote))


def test_filtered_queries(pair: tuple[QdrantClient, QdrantClient, str]) -> None:
    remote, local, name = pair
    queries = np.random.default_rng(7).normal(size=(4, DIM)).astype(np.float32)
    exact_hnsw = m.SearchParams(hnsw_ef=512)
    for q in queries:
        for flt in FILTERS:
            kwargs: dict[str, Any] = {"query": q.tolist(), "query_filter": flt, "limit": 10, "with_payload": True}
            ours = remote.query_points(name, search_params=exact_hnsw, **kwargs).points
            theirs = local.query_points(name, **kwargs).points
            assert_same_hits(ours, theirs, over_grpc(remote))
            if len(theirs) > 5:
                threshold = (theirs[4].score + theirs[5].score) / 2
                paged: dict[str, Any] = {"offset": 2, "score_threshold": threshold}
                assert_same_hits(remote.query_points(name, search_params=m.SearchParams(exact=True),
                                                     **kwargs, **paged).points,
                                 local.query_points(name, **kwargs, **paged).points, over_grpc(remote))


@pytest.mark.filterwarnings("ignore:Local mode performs exact")
def test_query_by_point_id_and_batch(pair: tuple[QdrantClient, QdrantClient, str]) -> None:
    remote, local, name = pair
    ids = _ids()
    for pid in (ids[1], ids[141]):
        assert_same_hits(remote.query_points(name, query=pid, limit=5, search_params=m.SearchParams(exact=True)).points,
                         local.query_points(name, query=pid, limit=5).points, over_grpc(remote))
    requests = [m.QueryRequest(query=np.ones(DIM).tolist(), limit=3, filter=FILTERS[2], with_payload=True,
                               params=m.SearchParams(hnsw_ef=512)),
                m.QueryRequest(query=m.NearestQuery(nearest=np.arange(DIM, dtype=float).tolist()), limit=4,
                               with_vector=True)]
    ours, theirs = remote.query_batch_points(name, requests), local.query_batch_points(name, requests)
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        assert_same_hits(a.points, b.points, over_grpc(remote))
        for x, y in zip(a.points, b.points, strict=True):
            if y.vector is not None:
                np.testing.assert_allclose(np.asarray(x.vector), np.asarray(y.vector), atol=SCORE_TOL)
    no_query: dict[str, Any] = {"limit": 5, "offset": 2, "query_filter": FILTERS[1], "with_payload": True}
    assert_same_hits(remote.query_points(name, **no_query).points, local.query_points(name, **no_query).points,
                     over_grpc(remote))


def test_delete_collection(remote: QdrantClient) -> None:
    local = QdrantClient(":memory:")
    name = unique("compat_drop")
    for client in (remote, local):
        client.create_collection(name, vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
        client.upsert(name, [m.PointStruct(id=1, vector=[1.0, 2.0])])
        assert client.delete_collection(name) is True
        assert client.delete_collection(name) is False
        assert not client.collection_exists(name)
