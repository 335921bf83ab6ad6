"""Named dense vectors, sparse vectors, multivectors and the Query API through qdrant-client, with
its local mode (Qdrant's behaviour, in process) as the oracle: each test makes the same calls on
this server and on ``QdrantClient(":memory:")`` and compares the answers, and the calls Qdrant
refuses are refused on both sides.

Compared: ids and their order, scores within 1e-4 (relative above 1), payloads, order values,
dense vectors within 1e-6 as float32, sparse indices exactly and their values within 1e-6. Data
is random floats from seeded generators, so scores do not tie except where the scoring makes
them (RRF ranks, context losses of 0): within a run of equal scores ids are compared as a set,
and the queries whose answers tie ask for more points than can match, so no run is cut by the
limit. Collections are small enough that the server scores them exactly.

qdrant-client 1.20 no longer has ``search``, ``search_groups`` or ``NamedVector``: the older
``/points/search`` and ``/points/search/groups`` endpoints are sent as raw JSON and compared with
local mode's equivalent ``query_points`` / ``query_points_groups``. Each feature is exercised by
its own tests (``has_vector`` only where it is the subject), so an unfinished one fails alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from infra.settings import Settings
from tests.api.conftest import Running, serving, unique

pytestmark = [pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant:UserWarning"),
              pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")]

N = 150
VOCAB = 40  # sparse indices are drawn from 0..VOCAB-1
GROUPS = 12  # payload "doc" takes 0..GROUPS-1: the group keys, and the ids of the lookup collection
SCORE_TOL = 1e-4
VECTOR_TOL = 1e-6
DENSE: dict[str, m.VectorParams] = {
    "text": m.VectorParams(size=8, distance=m.Distance.COSINE),
    "image": m.VectorParams(size=4, distance=m.Distance.EUCLID),
    "dot": m.VectorParams(size=6, distance=m.Distance.DOT),
}
SPARSE: dict[str, m.SparseVectorParams] = {
    "bm25": m.SparseVectorParams(modifier=m.Modifier.IDF),
    "splade": m.SparseVectorParams(),
}
NAMES = (*DENSE, *SPARSE)
VectorValue: TypeAlias = list[float] | m.SparseVector
MISSING = (400, 404, 422)  # a vector name or point that does not exist


# ---------------------------------------------------------------------------------------------
# data


def _id(i: int) -> int | str:
    """Spaced integers, then a few UUIDs (scroll puts integers first)."""
    return i * 3 if i < N - 12 else str(uuid.uuid5(uuid.NAMESPACE_OID, f"named-{i}"))


def _sparse(rng: np.random.Generator, count: int | None = None) -> m.SparseVector:
    """Distinct indices in random (unsorted) order, positive float values."""
    count = int(rng.integers(1, 7)) if count is None else count
    indices = rng.choice(VOCAB, size=count, replace=False)
    return m.SparseVector(indices=[int(i) for i in indices], values=(rng.random(count) + 0.1).tolist())


def _vector(rng: np.random.Generator, name: str) -> VectorValue:
    if name in DENSE:
        return rng.normal(size=DENSE[name].size).tolist()
    return _sparse(rng)


def _vectors(rng: np.random.Generator, i: int, names: Sequence[str]) -> dict[str, Any]:
    """Point ``i``'s vectors: all names (i % 10 == 0), one name (1..len), none (9), else each with p=0.6."""
    kind = i % 10
    if kind == 0:
        chosen: Sequence[str] = names
    elif kind <= len(names):
        chosen = (names[kind - 1],)
    elif kind == 9:
        chosen = ()
    else:
        chosen = [name for name in names if rng.random() < 0.6]
    return {name: _vector(rng, name) for name in chosen}


def _payload(i: int, rng: np.random.Generator, rank: int) -> dict[str, Any]:
    return {"n": rank, "g": "abcd"[i % 4], "doc": i % GROUPS, "price": round(float(rng.random() * 100), 3)}


def _points(seed: int, names: Sequence[str] = NAMES, n: int = N) -> list[m.PointStruct]:
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(n)  # "n" is unique: order_by never ties
    return [m.PointStruct(id=_id(i), vector=_vectors(rng, i, names), payload=_payload(i, rng, int(ranks[i])))
            for i in range(n)]


def _holding(points: Sequence[m.PointStruct], name: str) -> list[Any]:
    return [p.id for p in points if isinstance(p.vector, dict) and name in p.vector]


def _as_batch(points: Sequence[m.PointStruct], names: Sequence[str]) -> m.Batch:
    """The same points as one ``Batch``: every point gets each of ``names`` (a batch has no gaps)."""
    rng = np.random.default_rng(len(points))
    vectors: dict[str, list[Any]] = {name: [] for name in names}
    for point in points:
        held = point.vector if isinstance(point.vector, dict) else {}
        for name in names:
            vectors[name].append(held.get(name) or _vector(rng, name))
    return m.Batch(ids=[p.id for p in points], vectors=vectors, payloads=[p.payload or {} for p in points])


FILTERS: list[m.Filter] = [
    m.Filter(must=[m.FieldCondition(key="g", match=m.MatchAny(any=["a", "c"]))]),
    m.Filter(must=[m.FieldCondition(key="price", range=m.Range(gte=20.0, lt=75.0))],
             must_not=[m.FieldCondition(key="g", match=m.MatchValue(value="b"))]),
    m.Filter(must=[m.FieldCondition(key="doc", range=m.Range(gt=2, lte=9))]),
    m.Filter(must_not=[m.HasIdCondition(has_id=[_id(i) for i in range(0, N, 2)])],
             should=[m.FieldCondition(key="doc", range=m.Range(lte=5)),
                     m.FieldCondition(key="g", match=m.MatchValue(value="d"))]),
]


# ---------------------------------------------------------------------------------------------
# comparisons


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= SCORE_TOL * max(1.0, abs(want))


def _summary(hits: Sequence[Any]) -> list[tuple[Any, float]]:
    return [(h.id, round(h.score, 5)) for h in hits]


def assert_same_vector(got: Any, want: Any, where: Any) -> None:
    """Named vectors by name; sparse indices exactly, values and dense components within 1e-6 (float32)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (where, got, want)
        for name, value in want.items():
            assert_same_vector(got[name], value, (where, name))
    elif isinstance(want, m.SparseVector):
        assert isinstance(got, m.SparseVector), (where, got, want)
        assert got.indices == want.indices, (where, got, want)
        np.testing.assert_allclose(np.asarray(got.values, np.float32), np.asarray(want.values, np.float32),
                                   rtol=0, atol=VECTOR_TOL, err_msg=str(where))
    elif want is None:
        assert got is None, (where, got)
    else:
        assert got is not None and np.shape(got) == np.shape(want), (where, got, want)
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=0,
                                   atol=VECTOR_TOL, err_msg=str(where))


def assert_same_records(got: Sequence[m.Record], want: Sequence[m.Record], context: Any = None) -> None:
    assert [r.id for r in got] == [r.id for r in want], context
    for a, b in zip(got, want, strict=True):
        assert a.payload == b.payload, (context, a.id)
        assert a.order_value == b.order_value, (context, a.id)
        assert_same_vector(a.vector, b.vector, (context, a.id))


def _runs(scores: Sequence[float]) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive scores equal within the tolerance."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or not _close(scores[i], scores[i - 1]):
            runs.append((start, i))
            start = i
    return runs


def assert_same_hits(got: Sequence[m.ScoredPoint], want: Sequence[m.ScoredPoint], limit: int,
                     context: Any = None) -> None:
    """Same scores rank by rank; the same ids within each run of equal scores (in any order), except a
    tied run cut by ``limit``; and the same payload, vector and order value for each id."""
    where = (context, _summary(got), _summary(want))
    assert len(got) == len(want), where
    for a, b in zip(got, want, strict=True):
        assert _close(a.score, b.score), where
    runs = _runs([h.score for h in want])
    for k, (start, end) in enumerate(runs):
        cut = k == len(runs) - 1 and end - start > 1 and len(want) >= limit
        if not cut:
            assert {h.id for h in got[start:end]} == {h.id for h in want[start:end]}, where
    by_id = {h.id: h for h in want}
    assert len(by_id) == len(want) and len({h.id for h in got}) == len(got), where
    for hit in got:
        oracle = by_id.get(hit.id)
        if oracle is not None:
            assert hit.payload == oracle.payload, (context, hit.id)
            assert hit.order_value == oracle.order_value, (context, hit.id)
            assert_same_vector(hit.vector, oracle.vector, (context, hit.id))


def assert_same_groups(got: Sequence[m.PointGroup], want: Sequence[m.PointGroup], group_size: int,
                       context: Any = None) -> None:
    assert [g.id for g in got] == [g.id for g in want], (context, [g.id for g in got], [g.id for g in want])
    for a, b in zip(got, want, strict=True):
        assert_same_hits(a.hits, b.hits, group_size, (context, b.id))
        if b.lookup is None:
            assert a.lookup is None, (context, b.id, a.lookup)
        else:
            assert a.lookup is not None, (context, b.id)
            assert_same_records([a.lookup], [b.lookup], (context, b.id))


@dataclass
class Pair:
    """This server (``ours``) and local mode (``local``), given the same calls."""

    ours: QdrantClient
    local: QdrantClient

    def each(self, method: str, *args: Any, **kwargs: Any) -> None:
        """The same write on both (callers pass ``wait=True``; local mode ignores it)."""
        for client in (self.ours, self.local):
            getattr(client, method)(*args, **kwargs)

    def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """The same call on both: (ours, the oracle's)."""
        return getattr(self.ours, method)(*args, **kwargs), getattr(self.local, method)(*args, **kwargs)

    def query(self, name: str, **kwargs: Any) -> list[m.ScoredPoint]:
        """``query_points`` on both, hits compared; returns the oracle's hits."""
        got, want = self.both("query_points", name, **kwargs)
        assert_same_hits(got.points, want.points, kwargs.get("limit", 10), kwargs)
        return list(want.points)

    def groups(self, name: str, **kwargs: Any) -> list[m.PointGroup]:
        got, want = self.both("query_points_groups", name, **kwargs)
        assert_same_groups(got.groups, want.groups, kwargs.get("group_size", 3), kwargs)
        return list(want.groups)

    def retrieve(self, name: str, ids: Sequence[Any], **kwargs: Any) -> None:
        got, want = self.both("retrieve", name, ids, **kwargs)
        assert_same_records(got, want, kwargs)

    def scroll(self, name: str, page: int = 25, **kwargs: Any) -> None:
        """Every page of a scroll, and its next-page offsets, the same."""
        offsets: tuple[Any, Any] = (None, None)
        while True:
            got, next_got = self.ours.scroll(name, limit=page, offset=offsets[0], **kwargs)
            want, next_want = self.local.scroll(name, limit=page, offset=offsets[1], **kwargs)
            assert_same_records(got, want, kwargs)
            assert next_got == next_want, kwargs
            if next_want is None:
                return
            offsets = (next_got, next_want)

    def counts(self, name: str, filters: Sequence[m.Filter | None]) -> None:
        for flt in filters:
            got, want = self.both("count", name, count_filter=flt, exact=True)
            assert got.count == want.count, flt

    def refused(self, method: str, *args: Any, statuses: Sequence[int] = (400, 422), **kwargs: Any) -> None:
        """Both sides raise: ours an HTTP error with one of ``statuses``."""
        with pytest.raises(UnexpectedResponse) as ours:
            getattr(self.ours, method)(*args, **kwargs)
        assert ours.value.status_code in statuses, (method, kwargs, ours.value)
        with pytest.raises((ValueError, KeyError)):
            getattr(self.local, method)(*args, **kwargs)


def _local_pair() -> Pair:
    """Local mode against itself: how this module's helpers were checked (every test but the raw-REST
    and restart ones passes on it). Not used by the tests."""
    return Pair(QdrantClient(":memory:"), QdrantClient(":memory:"))


@pytest.fixture(scope="module")
def ours(server: Running) -> Iterator[QdrantClient]:
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    yield client
    client.close()


@pytest.fixture
def pair(ours: QdrantClient) -> Iterator[Pair]:
    local = QdrantClient(":memory:")
    yield Pair(ours, local)
    local.close()


def _create(pair: Pair, name: str, dense: dict[str, m.VectorParams] | None = None,
            sparse: dict[str, m.SparseVectorParams] | None = None) -> None:
    pair.each("create_collection", name, vectors_config=DENSE if dense is None else dense,
              sparse_vectors_config=SPARSE if sparse is None else sparse)


def _filled(pair: Pair, prefix: str, seed: int = 1) -> tuple[str, list[m.PointStruct]]:
    """A collection with every name, its points upserted as two lists of ``PointStruct``."""
    name = unique(prefix)
    points = _points(seed)
    _create(pair, name)
    pair.each("upsert", name, points[: N // 2], wait=True)
    pair.each("upsert", name, points[N // 2:], wait=True)
    return name, points


def _between(hits: Sequence[m.ScoredPoint], at: int) -> float:
    """A score threshold between consecutive hits from rank ``at`` on whose scores are well apart, so no rounding
    difference puts a hit on the other side of it."""
    for a, b in zip(hits[at:], hits[at + 1:], strict=False):
        if abs(a.score - b.score) > 1e-3 * max(1.0, abs(a.score)):
            return (a.score + b.score) / 2
    raise AssertionError(f"no gap in the scores after rank {at}: {_summary(hits)}")


def _q(seed: int, name: str) -> VectorValue:
    return _vector(np.random.default_rng(seed), name)


# ---------------------------------------------------------------------------------------------
# 1. named dense vectors


def test_collection_info_reports_named_dense_and_sparse_params(pair: Pair) -> None:
    mixed, dense_only, sparse_only = unique("info_mixed"), unique("info_dense"), unique("info_sparse")
    _create(pair, mixed)
    _create(pair, dense_only, sparse={})
    _create(pair, sparse_only, dense={})
    for name in (mixed, dense_only, sparse_only):
        got, want = (info.config.params for info in pair.both("get_collection", name))
        assert isinstance(got.vectors, dict) and isinstance(want.vectors, dict), (name, got.vectors)
        assert {k: (v.size, v.distance) for k, v in got.vectors.items()} == \
            {k: (v.size, v.distance) for k, v in want.vectors.items()}, name
        assert {k: v.modifier or m.Modifier.NONE for k, v in (got.sparse_vectors or {}).items()} == \
            {k: v.modifier or m.Modifier.NONE for k, v in (want.sparse_vectors or {}).items()}, name
    points = _points(2)
    pair.each("upsert", mixed, points, wait=True)
    got_count, want_count = (info.points_count for info in pair.both("get_collection", mixed))
    assert got_count == want_count == N
    listed = {c.name for c in pair.ours.get_collections().collections}
    assert {mixed, dense_only, sparse_only} <= listed


def test_named_dense_points_read_back(pair: Pair) -> None:
    name = unique("named_read")
    points = _points(3, names=tuple(DENSE))
    _create(pair, name, sparse={})
    pair.each("upsert", name, points[:100], wait=True)
    pair.each("upsert", name, _as_batch(points[100:130], ["text", "dot"]), wait=True)
    pair.each("upsert", name, _as_batch(points[130:], list(DENSE)), wait=True)
    wanted = [points[i].id for i in (0, 1, 2, 3, 9, 11, 100, 101, 140, 149)] + [999_999]
    for with_vectors in (True, False, ["text"], ["image", "dot"], ["dot", "text", "image"]):
        pair.retrieve(name, wanted, with_vectors=with_vectors)
        pair.scroll(name, with_vectors=with_vectors)
    pair.scroll(name, with_vectors=["image"], with_payload=["n", "g"], scroll_filter=FILTERS[0])
    pair.counts(name, [None, *FILTERS[:3]])


def test_named_dense_queries(pair: Pair) -> None:
    name, points = _filled(pair, "named_query")
    for seed, using in enumerate(DENSE):
        q = _q(seed, using)
        hits = pair.query(name, query=q, using=using, limit=12, with_payload=True)
        assert {h.id for h in hits} <= set(_holding(points, using))  # only points holding the vector
        pair.query(name, query=m.NearestQuery(nearest=q), using=using, limit=300)  # every holder, ranked
        for flt in FILTERS:
            pair.query(name, query=q, using=using, query_filter=flt, limit=7, with_vectors=True)
        pair.query(name, query=q, using=using, limit=8, offset=2, score_threshold=_between(hits, 5))
        pair.query(name, query=q, using=using, limit=5, with_vectors=[using, "splade"],
                   with_payload=m.PayloadSelectorExclude(exclude=["price"]))


def test_has_vector_condition(pair: Pair) -> None:
    """``has_vector`` in count, scroll, query and prefetch filters, dense and sparse names, through vector edits."""
    name, points = _filled(pair, "has_vector")
    conditions = [m.Filter(must=[m.HasVectorCondition(has_vector=v)]) for v in NAMES] + \
                 [m.Filter(must_not=[m.HasVectorCondition(has_vector=v)]) for v in NAMES] + \
                 [m.Filter(should=[m.HasVectorCondition(has_vector="image"), m.HasVectorCondition(has_vector="bm25")],
                           must_not=[m.HasVectorCondition(has_vector="text")]),
                  m.Filter(must=[m.HasVectorCondition(has_vector="nope")]),
                  m.Filter(must_not=[m.HasVectorCondition(has_vector="nope")])]
    pair.counts(name, conditions)
    for flt in conditions[:6]:
        pair.scroll(name, scroll_filter=flt, with_vectors=["image", "bm25"])
        for seed, using in enumerate(("dot", "splade")):
            pair.query(name, query=_q(seed, using), using=using, query_filter=flt, limit=9)
    pair.query(name, query=_q(3, "splade"), using="splade", query_filter=conditions[5 + 4], limit=9)  # none
    pair.query(name, prefetch=m.Prefetch(query=_q(5, "text"), using="text", limit=40, filter=conditions[1]),
               query=_q(6, "dot"), using="dot", limit=10)
    ids = [p.id for p in points]
    pair.each("delete_vectors", name, vectors=["image", "splade"], points=ids[:40], wait=True)
    pair.each("update_vectors", name, [m.PointVectors(id=pid, vector={"bm25": _q(k, "bm25")})
                                       for k, pid in enumerate(ids[40:60])], wait=True)
    pair.counts(name, conditions)


def test_update_vectors_delete_vectors_and_replacing_upserts(pair: Pair) -> None:
    name, points = _filled(pair, "vec_edit", seed=7)
    rng = np.random.default_rng(70)
    ids = [p.id for p in points]
    updates = [m.PointVectors(id=ids[0], vector={"image": _vector(rng, "image")}),  # replaces one of all
               m.PointVectors(id=ids[9], vector={"text": _vector(rng, "text"), "splade": _sparse(rng)}),  # had none
               m.PointVectors(id=ids[2], vector={"bm25": _sparse(rng), "dot": _vector(rng, "dot")}),
               m.PointVectors(id=ids[-1], vector={"splade": _sparse(rng)})]
    pair.each("update_vectors", name, points=updates, wait=True)
    pair.each("delete_vectors", name, vectors=["text", "bm25"], points=[ids[10], ids[20], ids[2]], wait=True)
    pair.each("delete_vectors", name, vectors=["image"], points=m.FilterSelector(filter=m.Filter(
        must=[m.FieldCondition(key="g", match=m.MatchValue(value="d"))])), wait=True)
    replaced = [m.PointStruct(id=ids[30], vector={"dot": _vector(rng, "dot")}, payload={"replaced": 1}),
                m.PointStruct(id=ids[31], vector={}, payload={"n": 1000, "g": "a", "doc": 1, "price": 1.0}),
                m.PointStruct(id=ids[40], vector={v: _vector(rng, v) for v in NAMES}, payload={"g": "b"})]
    pair.each("upsert", name, replaced, wait=True)
    touched = [ids[i] for i in (0, 2, 9, 10, 20, 30, 31, 40, 3, 7)] + [ids[-1]]
    pair.retrieve(name, touched, with_vectors=True)
    pair.scroll(name, with_vectors=True)
    pair.counts(name, [None, *FILTERS])
    for seed, using in enumerate(NAMES):
        pair.query(name, query=_q(seed + 20, using), using=using, limit=300)


# ---------------------------------------------------------------------------------------------
# 2. sparse vectors


def test_sparse_vectors_read_back_sorted(pair: Pair) -> None:
    name, points = _filled(pair, "sparse_read", seed=8)
    assert any(isinstance(v, m.SparseVector) and v.indices != sorted(v.indices)
               for p in points if isinstance(p.vector, dict) for v in p.vector.values())  # unsorted input
    more = _points(80, names=("bm25", "splade"), n=20)
    batch = _as_batch([p.model_copy(update={"id": 10_000 + i}) for i, p in enumerate(more)], ["splade", "bm25"])
    pair.each("upsert", name, batch, wait=True)
    wanted = [points[i].id for i in range(0, 40, 3)] + [10_000, 10_007]
    for with_vectors in (True, ["splade"], ["bm25", "text"]):
        pair.retrieve(name, wanted, with_vectors=with_vectors)
    pair.scroll(name, with_vectors=["splade", "bm25"], page=40)


def test_sparse_queries_score_overlapping_indices(pair: Pair) -> None:
    name, points = _filled(pair, "sparse_query", seed=9)
    rng = np.random.default_rng(90)
    for using in SPARSE:
        for count in (1, 2, 5, 12):
            q = _sparse(rng, count)
            hits = pair.query(name, query=q, using=using, limit=300, with_vectors=[using])
            assert {h.id for h in hits} <= set(_holding(points, using))
            for flt in FILTERS:
                pair.query(name, query=q, using=using, query_filter=flt, limit=6)
            if len(hits) > 6:
                pair.query(name, query=q, using=using, limit=3, offset=1,
                           score_threshold=_between(hits, 3))
        narrow = pair.query(name, query=m.SparseVector(indices=[3, VOCAB + 7], values=[0.7, 2.0]), using=using,
                            limit=50)
        assert 0 < len(narrow) < 50  # only the points sharing index 3 (VOCAB + 7 is in none)
        assert pair.query(name, query=m.SparseVector(indices=[VOCAB + 1], values=[1.0]), using=using) == []


def test_idf_scores_follow_writes(pair: Pair) -> None:
    """bm25 (IDF modifier) scores weigh rarer indices up; the document frequencies move with each write."""
    name, points = _filled(pair, "idf", seed=10)
    query = m.SparseVector(indices=[5, 1, 30, 12, 7], values=[1.0, 0.5, 2.0, 0.25, 1.5])
    pair.query(name, query=query, using="bm25", limit=300)
    holders = _holding(points, "bm25")
    pair.each("delete", name, points_selector=m.PointIdsList(points=holders[:8]), wait=True)
    pair.query(name, query=query, using="bm25", limit=300)
    pair.each("delete_vectors", name, vectors=["bm25"], points=holders[8:14], wait=True)
    pair.query(name, query=query, using="bm25", limit=300)
    rng = np.random.default_rng(100)
    added = [m.PointStruct(id=20_000 + i, vector={"bm25": _sparse(rng, 3)}) for i in range(10)]
    pair.each("upsert", name, added, wait=True)
    pair.query(name, query=query, using="bm25", limit=300)
    pair.query(name, query=query, using="bm25", query_filter=FILTERS[1], limit=10)


def test_sparse_only_collection(pair: Pair) -> None:
    name = unique("sparse_only")
    _create(pair, name, dense={})
    points = _points(11, names=tuple(SPARSE))
    pair.each("upsert", name, points, wait=True)
    pair.retrieve(name, [p.id for p in points[:30]], with_vectors=True)
    pair.scroll(name, with_vectors=True)
    rng = np.random.default_rng(110)
    for using in SPARSE:
        pair.query(name, query=_sparse(rng, 6), using=using, limit=20, with_vectors=True)
    pair.counts(name, [None, *FILTERS])
    got, want = (info.points_count for info in pair.both("get_collection", name))
    assert got == want


def test_sparse_validation_is_refused(pair: Pair) -> None:
    name = unique("sparse_bad")
    _create(pair, name)
    kept = m.PointStruct(id=1, vector={"splade": m.SparseVector(indices=[1, 2], values=[1.0, 2.0])})
    pair.each("upsert", name, [kept], wait=True)
    duplicate = m.SparseVector(indices=[4, 2, 4], values=[1.0, 2.0, 3.0])
    unequal = m.SparseVector(indices=[4, 2, 5], values=[1.0, 2.0])
    for bad in (duplicate, unequal):
        for using in SPARSE:
            pair.refused("upsert", name, [m.PointStruct(id=2, vector={using: bad})], wait=True)
            pair.refused("update_vectors", name, [m.PointVectors(id=1, vector={using: bad})], wait=True)
            pair.refused("query_points", name, query=bad, using=using)
    pair.retrieve(name, [1, 2], with_vectors=True)


def test_wrong_vector_names_and_kinds_are_refused(pair: Pair) -> None:
    name, points = _filled(pair, "names_bad", seed=12)
    dense, sparse = _q(1, "text"), _q(2, "splade")
    lacking_text = next(p.id for p in points if isinstance(p.vector, dict) and "text" not in p.vector)
    pair.refused("query_points", name, query=dense, using="nope", statuses=MISSING)
    pair.refused("query_points", name, query=sparse, using="nope", statuses=MISSING)
    pair.refused("query_points", name, query=dense, statuses=MISSING)  # no unnamed vector here
    pair.refused("query_points", name, query=dense, using="bm25")  # dense query, sparse name
    pair.refused("query_points", name, query=sparse, using="text")  # sparse query, dense name
    pair.refused("query_points", name, query=[1.0, 2.0, 3.0], using="text")  # wrong size
    pair.refused("query_points", name, query=lacking_text, using="text", statuses=MISSING)
    pair.refused("query_points", name, prefetch=m.Prefetch(query=dense, using="nope"),
                 query=m.FusionQuery(fusion=m.Fusion.RRF), statuses=MISSING)
    pair.refused("query_points", name, query=m.RecommendQuery(recommend=m.RecommendInput(
        positive=[points[0].id])), using="nope", statuses=MISSING)
    pair.refused("upsert", name, [m.PointStruct(id=1, vector={"nope": dense})], wait=True, statuses=MISSING)
    pair.refused("upsert", name, [m.PointStruct(id=1, vector={"image": dense})], wait=True)
    pair.refused("upsert", name, [m.PointStruct(id=1, vector={"text": sparse})], wait=True)
    pair.refused("upsert", name, [m.PointStruct(id=1, vector={"bm25": dense})], wait=True)
    pair.refused("update_vectors", name, [m.PointVectors(id=points[0].id, vector={"nope": dense})],
                 wait=True, statuses=MISSING)
    pair.refused("update_vectors", name, [m.PointVectors(id=123_456_789, vector={"text": dense})],
                 wait=True, statuses=MISSING)
    pair.refused("delete_vectors", name, vectors=["nope"], points=[points[0].id], wait=True, statuses=MISSING)
    pair.retrieve(name, [1, points[0].id], with_vectors=True)  # nothing was written


# ---------------------------------------------------------------------------------------------
# 3. the Query API


def test_prefetch_fusion_rrf_and_dbsf(pair: Pair) -> None:
    name, _ = _filled(pair, "fusion", seed=13)
    prefetch = [m.Prefetch(query=_q(1, "text"), using="text", limit=20),
                m.Prefetch(query=_q(2, "splade"), using="splade", limit=15, filter=FILTERS[1]),
                m.Prefetch(query=_q(3, "image"), using="image", limit=10),
                m.Prefetch(query=_q(4, "bm25"), using="bm25", limit=10)]
    for fusion in (m.Fusion.RRF, m.Fusion.DBSF):
        query = m.FusionQuery(fusion=fusion)
        whole = pair.query(name, prefetch=prefetch, query=query, limit=100, with_payload=True)
        pair.query(name, prefetch=prefetch[:2], query=query, limit=100, with_vectors=["text", "splade"])
        pair.query(name, prefetch=prefetch, query=query, query_filter=FILTERS[0], limit=100)
        pair.query(name, prefetch=prefetch, query=query, limit=100, score_threshold=_between(whole, len(whole) // 2))
    dbsf = m.FusionQuery(fusion=m.Fusion.DBSF)  # its scores do not tie: cut and paged
    pair.query(name, prefetch=prefetch, query=dbsf, limit=7, offset=3, with_payload=["g", "n"])


def test_nested_prefetch_and_rescoring(pair: Pair) -> None:
    name, _ = _filled(pair, "nested", seed=14)
    inner = m.Prefetch(prefetch=[m.Prefetch(query=_q(1, "text"), using="text", limit=60),
                                 m.Prefetch(query=_q(2, "bm25"), using="bm25", limit=40, filter=FILTERS[0])],
                       query=m.FusionQuery(fusion=m.Fusion.RRF), limit=50)
    outer = [m.Prefetch(prefetch=inner, query=_q(3, "dot"), using="dot", limit=20),
             m.Prefetch(prefetch=m.Prefetch(query=_q(4, "image"), using="image", limit=30),
                        query=_q(5, "text"), using="text", limit=15, filter=FILTERS[1])]
    hits = pair.query(name, prefetch=outer, query=_q(6, "text"), using="text", limit=12,
                      with_vectors=["text", "dot"], with_payload=["g"])
    pair.query(name, prefetch=outer, query=_q(6, "text"), using="text", limit=5, offset=3,
               score_threshold=_between(hits, 6))
    pair.query(name, prefetch=outer, query=m.FusionQuery(fusion=m.Fusion.DBSF), query_filter=FILTERS[2], limit=8)
    pair.query(name, prefetch=outer[1], query=_q(7, "image"), using="image", limit=10, with_vectors=True)
    pair.query(name, prefetch=m.Prefetch(query=_q(8, "splade"), using="splade", limit=30,
                                         score_threshold=0.2),
               query=_q(9, "dot"), using="dot", limit=10)


def test_query_by_point_id(pair: Pair) -> None:
    name, points = _filled(pair, "by_id", seed=15)
    for using in NAMES:
        holders = _holding(points, using)
        for pid in (holders[0], holders[len(holders) // 2], holders[-1]):
            pair.query(name, query=pid, using=using, limit=8, with_payload=True)
            pair.query(name, query=m.NearestQuery(nearest=pid), using=using, limit=5, query_filter=FILTERS[0])
    text_holder = _holding(points, "text")[3]
    pair.query(name, prefetch=m.Prefetch(query=text_holder, using="text", limit=30), query=_q(1, "image"),
               using="image", limit=10)


def test_query_batch_points(pair: Pair) -> None:
    name, points = _filled(pair, "batch", seed=16)
    requests = [
        m.QueryRequest(query=_q(1, "text"), using="text", limit=6, filter=FILTERS[0], with_payload=True),
        m.QueryRequest(query=_q(2, "splade"), using="splade", limit=5, with_vector=["splade"]),
        m.QueryRequest(prefetch=[m.Prefetch(query=_q(3, "image"), using="image", limit=20),
                                 m.Prefetch(query=_q(4, "dot"), using="dot", limit=20)],
                       query=m.FusionQuery(fusion=m.Fusion.DBSF), limit=7),
        m.QueryRequest(query=_holding(points, "dot")[2], using="dot", limit=4, offset=1),
        m.QueryRequest(query=_q(5, "bm25"), using="bm25", limit=300, filter=FILTERS[3]),
    ]
    got, want = pair.both("query_batch_points", name, requests)
    assert len(got) == len(want) == len(requests)
    for request, a, b in zip(requests, got, want, strict=True):
        assert_same_hits(a.points, b.points, request.limit or 10, request)


def test_order_by_query(pair: Pair) -> None:
    name, _ = _filled(pair, "order_by", seed=17)
    pair.each("create_payload_index", name, "n", m.PayloadSchemaType.INTEGER, wait=True)
    orders: list[str | m.OrderBy] = ["n", m.OrderBy(key="n", direction=m.Direction.DESC),
                                     m.OrderBy(key="n", start_from=40)]
    for order in orders:
        pair.query(name, query=m.OrderByQuery(order_by=order), limit=15, with_payload=True)
        pair.query(name, query=m.OrderByQuery(order_by=order), query_filter=FILTERS[2], limit=10,
                   with_vectors=["image"])


def test_sample_query_returns_matching_points(pair: Pair) -> None:
    """Random by design: only the size of the answer, and that it holds matching points, are compared."""
    name, _ = _filled(pair, "sample", seed=18)
    for flt, limit in ((None, 10), (FILTERS[0], 25), (FILTERS[2], 300)):
        matching = {r.id for r in pair.local.scroll(name, scroll_filter=flt, limit=1000)[0]}
        got, want = (answer.points for answer in pair.both(
            "query_points", name, query=m.SampleQuery(sample=m.Sample.RANDOM), query_filter=flt, limit=limit))
        ids = [h.id for h in got]
        assert len(ids) == len(set(ids)) == len(want) == min(limit, len(matching)), flt
        assert set(ids) <= matching, flt


STRATEGIES = (m.RecommendStrategy.AVERAGE_VECTOR, m.RecommendStrategy.BEST_SCORE, m.RecommendStrategy.SUM_SCORES)


def _recommend(pair: Pair, name: str, points: Sequence[m.PointStruct], using: str) -> None:
    """Each strategy with ids and vectors as examples, positives only, negatives only (not for the average)."""
    holders = _holding(points, using)
    inputs = [m.RecommendInput(positive=[holders[0], _q(1, using)], negative=[holders[5]]),
              m.RecommendInput(positive=[holders[1], holders[2], holders[3]]),
              m.RecommendInput(positive=[_q(2, using)], negative=[holders[4], _q(3, using)])]
    for strategy in STRATEGIES:
        for given in inputs:
            recommend = given.model_copy(update={"strategy": strategy})
            pair.query(name, query=m.RecommendQuery(recommend=recommend), using=using, limit=8)
        if strategy != m.RecommendStrategy.AVERAGE_VECTOR:
            only_negative = m.RecommendInput(negative=[holders[6]], strategy=strategy)
            pair.query(name, query=m.RecommendQuery(recommend=only_negative), using=using, limit=8)
    pair.query(name, query=m.RecommendQuery(recommend=inputs[0]), using=using, query_filter=FILTERS[0], limit=6)


def test_recommend_strategies_on_named_dense_vectors(pair: Pair) -> None:
    name, points = _filled(pair, "recommend", seed=19)
    for using in DENSE:
        _recommend(pair, name, points, using)


def test_recommend_strategies_on_sparse_vectors(pair: Pair) -> None:
    name, points = _filled(pair, "recommend_sparse", seed=19)
    for using in SPARSE:
        _recommend(pair, name, points, using)


def test_discover_and_context_queries(pair: Pair) -> None:
    name, points = _filled(pair, "discover", seed=20)
    for using in ("text", "dot"):
        holders = _holding(points, using)
        pairs = [m.ContextPair(positive=holders[0], negative=holders[1]),
                 m.ContextPair(positive=_q(1, using), negative=holders[2])]
        for target in (holders[3], _q(2, using)):
            for context in (pairs[:1], pairs):
                pair.query(name, query=m.DiscoverQuery(discover=m.DiscoverInput(target=target, context=context)),
                           using=using, limit=10, with_payload=True)
        pair.query(name, query=m.DiscoverQuery(discover=m.DiscoverInput(target=holders[3], context=pairs)),
                   using=using, limit=6, query_filter=FILTERS[1])
        for context in (pairs[:1], pairs):  # many context scores tie at 0: ask for every point
            pair.query(name, query=m.ContextQuery(context=context), using=using, limit=1000)


def _lookup_collection(pair: Pair) -> str:
    """Points 0..GROUPS-1 but 5 (a group without its document), an unnamed vector and a title."""
    lookup = unique("lookup")
    pair.each("create_collection", lookup, vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    pair.each("upsert", lookup, [m.PointStruct(id=i, vector=[float(i), 1.5], payload={"title": f"doc {i}"})
                                 for i in range(GROUPS) if i != 5], wait=True)
    return lookup


def test_query_points_groups_with_lookup(pair: Pair) -> None:
    name, _ = _filled(pair, "groups", seed=21)
    lookup = _lookup_collection(pair)
    lookups: list[str | m.WithLookup | None] = [None, lookup, m.WithLookup(collection=lookup, with_payload=["title"],
                                                                           with_vectors=True)]
    for seed, using in enumerate(("text", "image", "splade")):
        for with_lookup in lookups:
            pair.groups(name, query=_q(seed, using), using=using, group_by="doc", group_size=3, limit=5,
                        with_lookup=with_lookup, with_payload=["doc", "n"])
        pair.groups(name, query=_q(seed, using), using=using, group_by="g", group_size=2, limit=10,
                    query_filter=FILTERS[1], with_vectors=[using])
    pair.groups(name, prefetch=m.Prefetch(query=_q(7, "bm25"), using="bm25", limit=60), query=_q(8, "dot"),
                using="dot", group_by="doc", group_size=4, limit=GROUPS, with_lookup=lookup)


def _rest_search(server: Running, name: str, body: dict[str, Any], path: str = "search") -> Any:
    answer = server.http.post(f"/collections/{name}/points/{path}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_older_search_endpoints_with_named_vectors(server: Running, pair: Pair) -> None:
    """``/points/search`` and ``/points/search/groups`` with ``{"name", "vector"}`` (dense or sparse), sent as
    JSON (qdrant-client 1.20 no longer has the calls), against local mode's ``query_points`` equivalent."""
    name, _ = _filled(pair, "legacy", seed=22)
    lookup = _lookup_collection(pair)
    flt = FILTERS[0]
    for seed, using in enumerate(NAMES):
        q = _q(seed, using)
        vector = q.model_dump() if isinstance(q, m.SparseVector) else q
        body = {"vector": {"name": using, "vector": vector}, "limit": 7, "offset": 1, "with_payload": True,
                "with_vector": [using], "filter": flt.model_dump(mode="json", exclude_unset=True)}
        got = [m.ScoredPoint.model_validate(p) for p in _rest_search(server, name, body)]
        want = pair.local.query_points(name, query=q, using=using, limit=7, offset=1, with_payload=True,
                                       with_vectors=[using], query_filter=flt).points
        assert_same_hits(got, want, 7, body)
        grouped = {"vector": {"name": using, "vector": vector}, "group_by": "doc", "group_size": 2, "limit": 4,
                   "with_payload": True, "with_lookup": {"collection": lookup}}  # REST's default: no payload
        groups = m.GroupsResult.model_validate(_rest_search(server, name, grouped, "search/groups")).groups
        want_groups = pair.local.query_points_groups(name, query=q, using=using, group_by="doc", group_size=2,
                                                     limit=4, with_lookup=lookup).groups
        assert_same_groups(groups, want_groups, 2, grouped)


# ---------------------------------------------------------------------------------------------
# 4. multivectors


def test_multivectors_answer_as_qdrant_or_are_refused_by_name(pair: Pair) -> None:
    """Either outcome is accepted: a 400 naming ``multivector_config`` (and no collection), or local mode's answers."""
    name = unique("multi")
    config = {"colbert": m.VectorParams(size=4, distance=m.Distance.COSINE,
                                        multivector_config=m.MultiVectorConfig(
                                            comparator=m.MultiVectorComparator.MAX_SIM)),
              "text": DENSE["text"]}
    pair.local.create_collection(name, vectors_config=config)
    try:
        pair.ours.create_collection(name, vectors_config=config)
    except UnexpectedResponse as refused:
        assert refused.status_code == 400, refused
        assert "multivector_config" in refused.content.decode(), refused
        assert not pair.ours.collection_exists(name)
        return
    got, want = (info.config.params.vectors for info in pair.both("get_collection", name))
    assert isinstance(got, dict) and isinstance(want, dict)
    assert got["colbert"].multivector_config == want["colbert"].multivector_config
    rng = np.random.default_rng(23)
    points = [m.PointStruct(id=i, vector={"colbert": rng.normal(size=(int(rng.integers(1, 5)), 4)).tolist(),
                                          "text": _vector(rng, "text")}, payload={"g": "abcd"[i % 4]})
              for i in range(60)]
    pair.each("upsert", name, points, wait=True)
    pair.retrieve(name, list(range(0, 60, 7)), with_vectors=True)
    for rows in (1, 3):
        pair.query(name, query=rng.normal(size=(rows, 4)).tolist(), using="colbert", limit=10, with_vectors=True)
    pair.query(name, query=5, using="colbert", limit=5, query_filter=FILTERS[0])
    pair.refused("upsert", name, [m.PointStruct(id=99, vector={"colbert": [[1.0, 2.0]]})], wait=True)


# ---------------------------------------------------------------------------------------------
# 5. a restart: snapshot and replay


def _answers(client: QdrantClient, name: str) -> list[Any]:
    """A fixed set of reads over named and sparse vectors: record lists and hit lists, in call order."""
    ids = [_id(i) for i in range(0, N, 4)]
    prefetch = [m.Prefetch(query=_q(1, "text"), using="text", limit=30),
                m.Prefetch(query=_q(2, "bm25"), using="bm25", limit=30)]
    return [
        client.retrieve(name, ids, with_vectors=True),
        client.scroll(name, limit=1000, with_vectors=["image", "splade"])[0],
        client.scroll(name, limit=1000, scroll_filter=FILTERS[1])[0],
        *[client.query_points(name, query=_q(seed, using), using=using, limit=300).points
          for seed, using in enumerate(NAMES)],
        client.query_points(name, prefetch=prefetch, query=m.FusionQuery(fusion=m.Fusion.RRF), limit=100).points,
        client.query_points(name, prefetch=prefetch, query=_q(3, "dot"), using="dot", limit=10).points,
        client.query_points(name, query=m.OrderByQuery(order_by="n"), limit=20).points,
    ]


def assert_same_answers(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        if b and isinstance(b[0], m.ScoredPoint):
            assert_same_hits(a, b, 1_000_000, k)
        else:
            assert_same_records(a, b, k)


def _restart_writes(client: QdrantClient, name: str, later: bool) -> None:
    """Before the snapshot: the collection, its points and an index; after it: vector edits and deletes."""
    points = _points(24)
    if not later:
        client.create_collection(name, vectors_config=DENSE, sparse_vectors_config=SPARSE)
        client.upsert(name, points[:100], wait=True)
        client.upsert(name, _as_batch(points[100:], list(NAMES)), wait=True)
        client.create_payload_index(name, "n", m.PayloadSchemaType.INTEGER, wait=True)
        return
    rng = np.random.default_rng(240)
    client.update_vectors(name, [m.PointVectors(id=points[i].id, vector={"image": _vector(rng, "image"),
                                                                         "bm25": _sparse(rng)})
                                 for i in (1, 9, 19, 101)], wait=True)
    client.delete_vectors(name, vectors=["text", "splade"], points=[points[i].id for i in (0, 10, 102)], wait=True)
    client.delete(name, points_selector=m.PointIdsList(points=[points[i].id for i in (3, 4, 140)]), wait=True)
    client.upsert(name, [m.PointStruct(id=points[20].id, vector={"splade": _sparse(rng)}, payload={"n": 500})],
                  wait=True)


def test_named_and_sparse_vectors_survive_a_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('named')}", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    name = unique("restart")
    local = QdrantClient(":memory:")
    for later in (False, True):
        _restart_writes(local, name, later)
    want = _answers(local, name)
    with serving(settings) as server:
        client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        _restart_writes(client, name, later=False)
        assert server.replica.projector.request_snapshot(60) is not None
        _restart_writes(client, name, later=True)  # replayed over the snapshot after the restart
        before = _answers(client, name)
        assert_same_answers(before, want)
    with serving(settings) as server:
        client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        after = _answers(client, name)
        assert_same_answers(after, before)
        assert_same_answers(after, want)
        got, expected = client.get_collection(name).config.params, local.get_collection(name).config.params
        assert isinstance(got.vectors, dict) and isinstance(expected.vectors, dict)
        assert {k: (v.size, v.distance) for k, v in got.vectors.items()} == \
            {k: (v.size, v.distance) for k, v in expected.vectors.items()}
        assert set(got.sparse_vectors or {}) == set(SPARSE)
