"""Qdrant's Query API over one collection: a tree of prefetches, each level a query, its hits the
candidates of the level above (re-scored by a vector query or fused: RRF, DBSF).

Semantics follow Qdrant (qdrant-client's local mode is the oracle in the tests):
- a level's filter applies to it and to every prefetch below it (filters are pushed down, so a
  prefetch's limit counts filtered candidates); a prefetch without ``limit`` takes 10;
- a vector query above prefetches scores exactly the union of their hits (that match its filter);
- fusion: RRF adds ``1 / (k + position)`` per source (positions from 0, ``k`` = 2 unless given,
  weights dividing ``position + 1``, as qdrant-client computes it), DBSF normalises each source by
  mean ± 3 standard deviations and sums;
  ties keep first appearance; ``score_threshold`` keeps fused scores at or above it;
- nearest, recommend, discover and context at the leaves; ``order_by`` and ``sample``.
Recommend (best score, sum of scores), discover and context score every candidate exactly
(numpy over the stored rows), as local mode does; the average-vector strategy is a nearest query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from projections import query as reads
from projections.collection import Collection
from projections.filters import Filter
from projections.index.quantized import QuantizedSearch
from projections.index.segments import SegmentedIndex, rows_in_chunks
from projections.payload_index import FieldIndex, members
from projections.search import Hit, hits_of, search, sparse_search
from schemas.ids import PointId, id_order

RRF_K = 2  # qdrant-client's DEFAULT_RANKING_CONSTANT_K
EPSILON = 1.1920929e-7  # f32::EPSILON, as Qdrant's context scores use it

Sparse = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Nearest:
    """Nearest to a dense row or a sparse vector; ``exclude``: the points named as the query."""

    dense: np.ndarray | None = None
    sparse: Sparse | None = None
    exclude: frozenset[PointId] = frozenset()


@dataclass(frozen=True)
class Fusion:
    method: Literal["rrf", "dbsf"]
    k: int = RRF_K
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class OrderBy:
    index: FieldIndex
    descending: bool = False
    start: float | None = None


@dataclass(frozen=True)
class Sample:
    pass


@dataclass(frozen=True)
class Scan:
    """Exact scores of every candidate: recommend (``best_score``, ``sum_scores``), discover, context."""

    kind: Literal["best_score", "sum_scores", "discover", "context"]
    positive: tuple[np.ndarray, ...] = ()
    negative: tuple[np.ndarray, ...] = ()
    sparse_positive: tuple[Sparse, ...] = ()  # recommend on a sparse vector: its examples
    sparse_negative: tuple[Sparse, ...] = ()
    target: np.ndarray | None = None
    pairs: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    exclude: frozenset[PointId] = frozenset()


Query = Nearest | Fusion | OrderBy | Sample | Scan | None


@dataclass(frozen=True)
class Plan:
    query: Query
    using: str = ""
    flt: Filter | None = None
    prefetch: tuple[Plan, ...] = ()
    limit: int = 10
    offset: int = 0
    score_threshold: float | None = None
    ef: int | None = None
    exact: bool = False
    quantized: QuantizedSearch | None = None


@dataclass(frozen=True, slots=True)
class Scored:
    id: PointId
    score: float
    order_value: int | float | None = None


def execute(coll: Collection, plan: Plan, outer: Filter | None = None) -> list[Scored]:
    """The hits of ``plan`` (its limit after its offset), best first; call it inside ``reads.reading``."""
    flt = Filter.all_of(outer, plan.flt)
    if not plan.prefetch:
        return _leaf(coll, plan, flt, None)
    sources = [execute(coll, inner, flt) for inner in plan.prefetch]
    if isinstance(plan.query, Fusion):
        fused = _fuse(plan.query, sources, plan.limit + plan.offset)
        if plan.score_threshold is not None:
            fused = [s for s in fused if s.score >= plan.score_threshold]
        return fused[plan.offset:]
    candidates = list(dict.fromkeys(s.id for source in sources for s in source))
    if not candidates:
        return []
    return _leaf(coll, plan, flt, candidates)


def _leaf(coll: Collection, plan: Plan, flt: Filter | None, candidates: list[PointId] | None) -> list[Scored]:
    """One level without prefetches, or the re-scoring of ``candidates`` (the prefetches' hits)."""
    q, need = plan.query, plan.limit + plan.offset
    if isinstance(q, Fusion):
        raise ValueError("fusion needs prefetches")
    exclude = q.exclude if isinstance(q, (Nearest, Scan)) else frozenset()
    if exclude:
        flt = Filter.all_of(flt, Filter.excluding(exclude))
    among = None if candidates is None else _labels_of(coll, candidates, flt)
    if q is None:
        if among is None:
            ids = reads.first_by_id(coll, flt, need)
        else:
            ids = sorted((coll.id_of[label] for label in among.tolist()), key=id_order)[:need]
        return [Scored(pid, 1.0) for pid in ids[plan.offset:]]
    if isinstance(q, OrderBy):
        if among is not None:
            flt = Filter.all_of(flt, Filter.has_ids([coll.id_of[label] for label in among.tolist()]))
        rows = reads.ordered(coll, q.index, flt, need, descending=q.descending, start=q.start)[plan.offset:]
        return [Scored(pid, 1.0, value) for pid, value in rows]
    if isinstance(q, Sample):
        labels = reads.matching_labels(coll, flt) if among is None else among
        picked = np.random.default_rng().permutation(len(labels))[:plan.limit]
        return [Scored(coll.id_of[int(label)], 1.0) for label in labels[picked].tolist()]
    if isinstance(q, Scan):
        return _scan(coll, plan, q, reads.matching_labels(coll, flt) if among is None else among)
    higher = True
    if q.sparse is not None:
        if among is None:
            hits: list[Hit] = sparse_search(coll, plan.using, *q.sparse, plan.limit, flt=flt, offset=plan.offset)
        else:
            found, scores = coll.sparse[plan.using].search(*q.sparse, need, among)
            hits = hits_of(coll, found, scores)[plan.offset:]
    else:
        assert q.dense is not None
        index = coll.dense(plan.using)
        assert index is not None
        higher = index.higher_is_better()
        if among is None:
            hits = search(coll, q.dense, plan.limit, using=plan.using, ef=plan.ef, flt=flt, exact=plan.exact,
                          offset=plan.offset, quantized=plan.quantized)
        else:
            held = among[index.holds(among)] if coll.partial else among
            found, scores = index.exact(q.dense, held, need)
            hits = hits_of(coll, found, scores)[plan.offset:]
    hits = reads.better_than(hits, plan.score_threshold, higher)
    return [Scored(h.id, h.score) for h in hits]


def _labels_of(coll: Collection, ids: list[PointId], flt: Filter | None) -> np.ndarray:
    """The labels, ascending, of those of ``ids`` that exist and match ``flt`` (a few: checked one by one)."""
    label_of, payload_of = coll.label_of, coll.payload_of
    labels = [label for pid in ids if (label := label_of.get(pid)) is not None
              and (flt is None or flt.matches(pid, payload_of.get(label)))]
    return np.sort(np.asarray(labels, dtype=np.int64))


def _fuse(fusion: Fusion, sources: Sequence[list[Scored]], limit: int) -> list[Scored]:
    scores: dict[PointId, float] = {}
    if fusion.method == "rrf":
        if fusion.weights is not None and len(fusion.weights) != len(sources):
            raise ValueError("rrf.weights: one weight per prefetch")
        for i, source in enumerate(sources):
            weight = 1.0 if fusion.weights is None else fusion.weights[i]
            for rank, hit in enumerate(source):
                part = 0.0 if weight <= 0 else 1 / ((rank + 1.0) / weight + fusion.k - 1.0)
                scores[hit.id] = scores.get(hit.id, 0.0) + part
    else:
        for source in sources:
            for pid, score in zip((h.id for h in source), _normalised([h.score for h in source]), strict=True):
                scores[pid] = scores.get(pid, 0.0) + score
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:limit]
    return [Scored(pid, score) for pid, score in ranked]


def _normalised(scores: list[float]) -> list[float]:
    """DBSF: a source's scores mapped by mean ± 3 standard deviations (sample deviation) to about 0..1."""
    if len(scores) == 1:
        return [0.5]
    if not scores:
        return []
    mean = sum(scores) / len(scores)
    variance = sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)
    if variance == 0:
        return [0.5] * len(scores)
    std = variance ** 0.5
    low, high = mean - 3 * std, mean + 3 * std
    return [(s - low) / (high - low) for s in scores]


# Exact scans: recommend's best score and sum of scores, discover, context ----------------------
def _core(index: SegmentedIndex, example: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Qdrant's internal similarity of the stored rows to ``example`` (higher is closer): cosine and
    dot products as they are, negated squared distance for Euclid, negated L1 distance for Manhattan."""
    q = index.prepare(example.reshape(1, -1))[0]
    if index.metric == "l2":
        return -np.square(rows - q, dtype=np.float32).sum(axis=1, dtype=np.float32)
    if index.metric == "manhattan":
        return -np.abs(rows - q, dtype=np.float32).sum(axis=1, dtype=np.float32)
    return (rows @ q).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.abs(x))


def _scaled_sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (_sigmoid(x) + 1.0)


def _recommend_scores(kind: str, positive: list[np.ndarray], negative: list[np.ndarray], count: int) -> np.ndarray:
    """Recommend's best score (the closer of the best positive and best negative, through a sigmoid)
    or sum of scores (positives minus negatives), from each example's scores of the candidates."""
    def side(scores: list[np.ndarray], empty: float) -> np.ndarray:
        if not scores:
            return np.full(count, empty, np.float32)
        every = np.stack(scores)
        return every.max(axis=0) if kind == "best_score" else every.sum(axis=0, dtype=np.float32)
    if kind == "sum_scores":
        return side(positive, 0.0) - side(negative, 0.0)
    pos, neg = side(positive, -np.inf), side(negative, -np.inf)
    with np.errstate(invalid="ignore"):
        return np.where(pos > neg, _scaled_sigmoid(pos), -_scaled_sigmoid(neg)).astype(np.float32)


def _scan_scores(index: SegmentedIndex, q: Scan, rows: np.ndarray) -> np.ndarray:
    if q.kind in ("best_score", "sum_scores"):
        return _recommend_scores(q.kind, [_core(index, e, rows) for e in q.positive],
                                 [_core(index, e, rows) for e in q.negative], len(rows))
    ranks = np.zeros(len(rows), np.float32)
    context = np.zeros(len(rows), np.float32)
    for positive, negative in q.pairs:
        pos, neg = _core(index, positive, rows), _core(index, negative, rows)
        ranks += np.sign(pos - neg)
        context += _sigmoid(np.minimum(pos - neg - EPSILON, 0.0))
    if q.kind == "context":
        return context
    assert q.target is not None
    return (ranks + _scaled_sigmoid(_core(index, q.target, rows))).astype(np.float32)


def _scan(coll: Collection, plan: Plan, q: Scan, labels: np.ndarray) -> list[Scored]:
    found: list[np.ndarray] = []
    scored: list[np.ndarray] = []
    if plan.using in coll.sparse:  # every point holding the vector, an example it shares nothing with scoring 0
        sparse = coll.sparse[plan.using]
        labels = labels[members(labels, sparse.labels())]
        found.append(labels)
        scored.append(_recommend_scores(q.kind, [sparse.scores(*e, labels)[0] for e in q.sparse_positive],
                                        [sparse.scores(*e, labels)[0] for e in q.sparse_negative], len(labels)))
    else:
        index = coll.dense(plan.using)
        assert index is not None
        if coll.partial:
            labels = labels[index.holds(labels)]
        for chunk, rows in rows_in_chunks(index, labels):
            found.append(chunk)
            scored.append(_scan_scores(index, q, rows))
    if not found:
        return []
    all_labels, all_scores = np.concatenate(found), np.concatenate(scored)
    order = np.argsort(-all_scores, kind="stable")
    if plan.score_threshold is not None:
        order = order[all_scores[order] > plan.score_threshold]
    order = order[plan.offset:plan.offset + plan.limit]
    return [Scored(coll.id_of[int(lbl)], float(s)) for lbl, s in zip(all_labels[order].tolist(),
                                                                      all_scores[order].tolist(), strict=True)]
