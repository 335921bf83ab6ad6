"""Queries: Qdrant's Query API (``/points/query``, ``/query/batch``, ``/query/groups``) and the
older ``/points/search`` (``/search/batch``, ``/search/groups``).

A request becomes a :class:`projections.plans.Plan` (prefetches, each level's query, ``using``,
filter, limit, threshold), executed against one state of the collection. Scores are Qdrant's:
cosine similarity and dot product (higher is better), Euclidean and Manhattan distance (lower is better);
sparse vectors score by dot product. A query given as a point id searches with that point's
vector (of ``using``, or of ``lookup_from``) and leaves the point itself out, as Qdrant does.
Without ``query``, points come in id order with score 1. ``score_threshold`` keeps hits strictly
better than it (fused scores: at or above it), as Qdrant and qdrant-client do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from projections import plans
from projections import query as reads
from projections.collection import Collection
from projections.errors import PointNotFound
from projections.index.quantized import DEFAULT_OVERSAMPLING, QuantizedSearch
from schemas import paths
from schemas.ids import PointId
from vectorizer.api import parsing as p
from vectorizer.api.context import Api, api, body, json_body, ok
from vectorizer.api.errors import BadRequest, Unprocessable
from vectorizer.api.records import PayloadView, VectorSelector, payload_view, records, wants_vector
from vectorizer.api.routes.reads import ReadOptions, order_by_spec, range_index, read_options, readable
from vectorizer.api.vectors import check_name, is_sparse, query_vector, raw_query

router = APIRouter(tags=["search"])

_QUERY_FIELDS = ("query", "filter", "params", "score_threshold", "limit", "offset", "with_payload", "with_vector",
                 "using", "prefetch", "lookup_from", "shard_key", "consistency")
_PREFETCH_FIELDS = ("prefetch", "query", "using", "filter", "params", "score_threshold", "limit", "lookup_from")
_SEARCH_FIELDS = ("vector", "filter", "params", "score_threshold", "limit", "offset", "with_payload", "with_vector",
                  "shard_key", "consistency")
_GROUP_FIELDS = ("group_by", "group_size", "with_lookup")
_STRATEGIES = ("average_vector", "best_score", "sum_scores")

#: Finds another collection by name (``lookup_from``, ``with_lookup``): 404 when it does not exist.
Lookup = Callable[[str], Collection]


@dataclass(frozen=True)
class Parsed:
    """One query request: its plan and how its points are shown."""

    plan: plans.Plan
    view: PayloadView
    with_vector: VectorSelector


@router.post("/collections/{collection_name}/points/query", summary="Query points (Qdrant's Query API)",
             openapi_extra=json_body("query, prefetch, using, filter, limit, offset, with_payload, with_vector, "
                                     "score_threshold, params {hnsw_ef, exact, quantization}, lookup_from, "
                                     "consistency"))
def query(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
          b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return ok(request, query_page(a, collection_name, opts, b))


def query_page(a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any]) -> dict[str, Any]:
    """``{"points": hits}`` of one query request (REST and gRPC)."""
    coll = readable(a, collection_name, opts, b)
    with reads.reading(coll):  # one state for the query points, the hits and their records
        return {"points": run(coll, parse_query(coll, b, "", a.lookup))}


@router.post("/collections/{collection_name}/points/query/batch", summary="Several queries at once",
             openapi_extra=json_body("searches: [query requests], consistency"))
def query_batch(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return ok(request, query_batch_pages(a, collection_name, opts, b))


def query_batch_pages(a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any]) -> list[Any]:
    """``[{"points": hits}]``, one per query of ``searches`` (REST and gRPC)."""
    return batched(a, collection_name, opts, b, lambda coll, one, path: parse_query(coll, one, path, a.lookup),
                   lambda hits: {"points": hits})


@router.post("/collections/{collection_name}/points/query/groups", summary="Query points, grouped by a payload key",
             openapi_extra=json_body("the query request, plus group_by, group_size, with_lookup"))
def query_groups(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                 b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return _groups(request, a, collection_name, opts, b, lambda coll, rest: parse_query(coll, rest, "", a.lookup))


@router.post("/collections/{collection_name}/points/search", summary="Nearest points to a vector (older API)",
             openapi_extra=json_body("vector (or {name, vector}), filter, limit, offset, with_payload, with_vector, "
                                     "score_threshold, params, consistency"))
def search_points(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                  b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return ok(request, search_hits(a, collection_name, opts, b))


def search_hits(a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any]) -> list[dict[str, Any]]:
    """The hits of one search request (the older API; REST and gRPC)."""
    coll = readable(a, collection_name, opts, b)
    with reads.reading(coll):
        return run(coll, parse_search(coll, b, ""))


@router.post("/collections/{collection_name}/points/search/batch", summary="Several searches at once (older API)",
             openapi_extra=json_body("searches: [search requests], consistency"))
def search_batch(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                 b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return ok(request, batched(a, collection_name, opts, b, parse_search, lambda hits: hits))


@router.post("/collections/{collection_name}/points/search/groups", summary="Search, grouped by a payload key",
             openapi_extra=json_body("the search request, plus group_by, group_size, with_lookup"))
def search_groups(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                  b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return _groups(request, a, collection_name, opts, b, lambda coll, rest: parse_search(coll, rest, ""))


def batched(a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any],
            parse: Callable[[Collection, dict[str, Any], str], Parsed],
            answer: Callable[[list[dict[str, Any]]], Any]) -> list[Any]:
    """``searches``: each parsed and run against one state of the collection."""
    p.fields(b, "", ("searches", "consistency"))
    coll = readable(a, collection_name, opts, b)
    searches = p.array(b.get("searches"), "searches")
    with reads.reading(coll):
        parsed = [parse(coll, p.obj(s, f"searches[{i}]"), f"searches[{i}].") for i, s in enumerate(searches)]
        return [answer(run(coll, q)) for q in parsed]


def _groups(request: Request, a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any],
            parse: Callable[[Collection, dict[str, Any]], Parsed]) -> JSONResponse:
    """The request without its group fields, parsed and run, its hits grouped (:func:`grouped`)."""
    coll = readable(a, collection_name, opts, b)
    rest = {k: v for k, v in b.items() if k not in _GROUP_FIELDS}
    with reads.reading(coll):
        return ok(request, {"groups": grouped(coll, parse(coll, rest), b, a.lookup)})


# Parsing ---------------------------------------------------------------------------------
def parse_search(coll: Collection, b: dict[str, Any], path: str) -> Parsed:
    """The older search request: ``vector`` is an array (the unnamed vector) or ``{name, vector}``."""
    p.fields(b, path.rstrip("."), _SEARCH_FIELDS)
    p.unsupported(b, "shard_key")
    name, raw = raw_query(b.get("vector"))
    if raw is None:
        raise BadRequest(f"{path}vector: required")
    using = name or ""
    kind, vector = query_vector(coll.config, check_name(coll.config, using), raw, f"{path}vector")
    nearest = plans.Nearest(dense=vector) if kind == "dense" else plans.Nearest(sparse=vector)
    return _parsed(b, path, _level(coll, b, path, nearest, using, top=True))


def parse_query(coll: Collection, b: dict[str, Any], path: str, lookup: Lookup) -> Parsed:
    p.fields(b, path.rstrip("."), _QUERY_FIELDS)
    p.unsupported(b, "shard_key")
    return _parsed(b, path, _plan(coll, b, path, lookup, top=True))


def _parsed(b: dict[str, Any], path: str, plan: plans.Plan) -> Parsed:
    return Parsed(plan, payload_view(b.get("with_payload"), f"{path}with_payload", default=False),
                  wants_vector(b.get("with_vector"), f"{path}with_vector"))


def _plan(coll: Collection, b: dict[str, Any], path: str, lookup: Lookup, *, top: bool) -> plans.Plan:
    """One level of a query (the request, or one of its prefetches) and the levels below it."""
    if not top:
        p.fields(b, path.rstrip("."), _PREFETCH_FIELDS)
    using = "" if b.get("using") is None else p.string(b["using"], f"{path}using")
    raw_prefetch = b.get("prefetch")
    prefetch = [] if raw_prefetch is None else raw_prefetch if isinstance(raw_prefetch, list) else [raw_prefetch]
    below = tuple(_plan(coll, p.obj(item, f"{path}prefetch[{i}]"), f"{path}prefetch[{i}].", lookup, top=False)
                  for i, item in enumerate(prefetch))
    q = _query(coll, b.get("query"), f"{path}query", using, _lookup_from(coll, b, path, lookup), bool(below))
    plan = _level(coll, b, path, q, using, top=top)
    return replace(plan, prefetch=below)


def _level(coll: Collection, b: dict[str, Any], path: str, q: plans.Query, using: str, *, top: bool) -> plans.Plan:
    ef, exact, quantized = None, False, None
    if b.get("params") is not None:
        params = p.obj(b["params"], f"{path}params")
        p.fields(params, f"{path}params", ("hnsw_ef", "exact", "quantization"), ignored=("indexed_only", "acorn"))
        quantized = _quantization_params(params.get("quantization"), f"{path}params.quantization")
        if params.get("hnsw_ef") is not None:
            ef = p.integer(params["hnsw_ef"], f"{path}params.hnsw_ef", minimum=1)
        if params.get("exact") is not None:
            exact = p.boolean(params["exact"], f"{path}params.exact")
    limit = p.limit(b, path, 10)
    offset = p.offset(b, path) if top else 0
    if limit + offset > p.MAX_RESULTS:
        raise BadRequest(f"{path}limit: limit + offset must not exceed {p.MAX_RESULTS}")
    threshold = None if b.get("score_threshold") is None else p.number(b["score_threshold"],
                                                                       f"{path}score_threshold")
    return plans.Plan(q, using, p.filter_of(b.get("filter"), f"{path}filter", coll), (), limit, offset, threshold,
                      ef, exact, quantized)


@dataclass(frozen=True)
class _Source:
    """Where point ids in a query find their vectors: a collection (``lookup_from``) and a vector name."""

    coll: Collection
    vector: str | None  # None: the level's ``using``
    same: bool  # the queried collection itself: points named as examples are left out of the hits


def _lookup_from(coll: Collection, b: dict[str, Any], path: str, lookup: Lookup) -> _Source:
    if b.get("lookup_from") is None:
        return _Source(coll, None, True)
    spec = p.obj(b["lookup_from"], f"{path}lookup_from")
    p.fields(spec, f"{path}lookup_from", ("collection", "vector", "shard_key"))
    other = lookup(p.string(spec.get("collection"), f"{path}lookup_from.collection"))
    vector = None if spec.get("vector") is None else p.string(spec["vector"], f"{path}lookup_from.vector")
    return _Source(other, vector, other is coll)


def _query(coll: Collection, raw: object, path: str, using: str, source: _Source, has_prefetch: bool) -> plans.Query:
    """Qdrant's ``Query``: a vector, sparse vector or point id (nearest), or one of the query objects."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or is_sparse(raw):
        return _nearest(coll, raw, path, using, source)
    if len(raw) != 1:
        raise BadRequest(f"{path}: expected one of nearest, recommend, discover, context, order_by, fusion, rrf, "
                         f"sample, got {', '.join(sorted(raw)) or 'an empty object'}")
    ((kind, value),) = raw.items()
    where = f"{path}.{kind}"
    if kind == "nearest":
        return _nearest(coll, value, where, using, source)
    if kind in ("fusion", "rrf"):
        if not has_prefetch:
            raise BadRequest(f"Bad request: {path}: {kind} needs prefetches to fuse")
        if kind == "fusion":
            if value not in ("rrf", "dbsf"):
                raise BadRequest(f"{where}: expected 'rrf' or 'dbsf', got {p.show(value)}")
            return plans.Fusion(value)
        spec = p.obj(value, where)
        p.fields(spec, where, ("k", "weights"))
        k = plans.RRF_K if spec.get("k") is None else p.at_least_one(spec["k"], f"{where}.k")
        weights = None if spec.get("weights") is None else tuple(
            p.number(w, f"{where}.weights[{i}]") for i, w in enumerate(p.array(spec["weights"], f"{where}.weights")))
        return plans.Fusion("rrf", k, weights)
    if kind == "order_by":
        order = order_by_spec(value)
        return plans.OrderBy(range_index(coll, order), order.descending,
                             None if order.start is None else float(order.start))
    if kind == "sample":
        if value != "random":
            raise BadRequest(f"{where}: expected 'random', got {p.show(value)}")
        return plans.Sample()
    if kind == "recommend":
        return _recommend(coll, value, where, using, source)
    if kind == "discover":
        spec = p.obj(value, where)
        p.fields(spec, where, ("target", "context"))
        seen: set[PointId] = set()
        target = _dense_example(coll, spec.get("target"), f"{where}.target", using, source, seen)
        pairs = _pairs(coll, spec.get("context"), f"{where}.context", using, source, seen)
        return plans.Scan("discover", target=target, pairs=pairs,
                          exclude=frozenset(seen) if source.same else frozenset())
    if kind == "context":
        seen = set()
        pairs = _pairs(coll, value, where, using, source, seen)
        return plans.Scan("context", pairs=pairs, exclude=frozenset(seen) if source.same else frozenset())
    if kind in ("mmr", "formula", "relevance_feedback"):
        raise BadRequest(f"{where}: not supported by this server")
    raise BadRequest(f"{path}: unknown query {kind!r}, expected one of nearest, recommend, discover, context, "
                     f"order_by, fusion, rrf, sample")


def _example(coll: Collection, value: object, path: str, using: str, source: _Source,
             seen: set[PointId]) -> tuple[str, Any]:
    """A vector input: a vector for ``using``, or a point id whose vector is looked up (and noted in ``seen``)."""
    check_name(coll.config, using)
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        pid = p.point_id(value, path)
        name = source.vector if source.vector is not None else using
        check_name(source.coll.config, name)
        found = reads.points(source.coll, [pid], [name])
        if not found.ids:
            raise PointNotFound(f"Not found: No point with id {pid} found")
        assert found.named is not None
        held, rows = found.named[name]
        if not held[0]:  # Qdrant's words (collection_query.rs, vector_not_found_error): name in Rust's Debug quotes
            raise PointNotFound(f"Not found: Vector with name {json.dumps(name)} for point not found")
        seen.add(pid)
        if name in source.coll.config.sparse():
            return "sparse", rows[0]
        return "dense", np.asarray(rows[0], np.float32)
    return query_vector(coll.config, using, value, path)


def _nearest(coll: Collection, value: object, path: str, using: str, source: _Source) -> plans.Nearest:
    seen: set[PointId] = set()
    kind, vector = _example(coll, value, path, using, source, seen)
    exclude = frozenset(seen) if source.same else frozenset()
    return plans.Nearest(dense=vector, exclude=exclude) if kind == "dense" else \
        plans.Nearest(sparse=vector, exclude=exclude)


def _dense_example(coll: Collection, value: object, path: str, using: str, source: _Source,
                   seen: set[PointId]) -> np.ndarray:
    if value is None:
        raise BadRequest(f"{path}: required")
    kind, vector = _example(coll, value, path, using, source, seen)
    if kind != "dense":
        raise BadRequest(f"{path}: not supported for sparse vectors by this server (dense vectors only)")
    return np.asarray(vector, np.float32)


def _pairs(coll: Collection, value: object, path: str, using: str, source: _Source,
           seen: set[PointId]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        pair = p.obj(item, f"{path}[{i}]")
        p.fields(pair, f"{path}[{i}]", ("positive", "negative"))
        out.append((_dense_example(coll, pair.get("positive"), f"{path}[{i}].positive", using, source, seen),
                    _dense_example(coll, pair.get("negative"), f"{path}[{i}].negative", using, source, seen)))
    return tuple(out)


def _recommend(coll: Collection, value: object, path: str, using: str, source: _Source) -> plans.Query:
    """Qdrant's ``RecommendInput``: positive and negative examples, and a strategy: the average vector
    (a nearest query), the best score or the sum of scores (an exact scan of the candidates)."""
    spec = p.obj(value, path)
    p.fields(spec, path, ("positive", "negative", "strategy"))
    strategy = spec.get("strategy") or "average_vector"
    if strategy not in _STRATEGIES:
        raise BadRequest(f"{path}.strategy: expected one of {', '.join(_STRATEGIES)}, got {p.show(strategy)}")
    seen: set[PointId] = set()
    examples = {side: [_example(coll, v, f"{path}.{side}[{i}]", using, source, seen)
                       for i, v in enumerate(p.array(spec.get(side) or [], f"{path}.{side}"))]
                for side in ("positive", "negative")}
    exclude = frozenset(seen) if source.same else frozenset()
    sparse = using in coll.config.sparse()
    if strategy == "average_vector":
        if not examples["positive"]:
            raise BadRequest(f"Bad request: {path}.positive: no positive examples given with 'average_vector' "
                             f"strategy")
        if sparse:
            return plans.Nearest(sparse=_sparse_average(examples["positive"], examples["negative"]), exclude=exclude)
        mean = np.mean(np.stack([v for _, v in examples["positive"]]), axis=0)
        if examples["negative"]:
            mean = mean + mean - np.mean(np.stack([v for _, v in examples["negative"]]), axis=0)
        return plans.Nearest(dense=mean.astype(np.float32), exclude=exclude)
    if not examples["positive"] and not examples["negative"]:
        raise BadRequest(f"Bad request: {path}: no positive or negative examples given with '{strategy}' strategy")
    kind: Literal["best_score", "sum_scores"] = "best_score" if strategy == "best_score" else "sum_scores"
    if sparse:
        return plans.Scan(kind, sparse_positive=tuple(v for _, v in examples["positive"]),
                          sparse_negative=tuple(v for _, v in examples["negative"]), exclude=exclude)
    return plans.Scan(kind, positive=tuple(v for _, v in examples["positive"]),
                      negative=tuple(v for _, v in examples["negative"]), exclude=exclude)


def _sparse_average(positive: list[tuple[str, Any]], negative: list[tuple[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Qdrant's sparse average: the mean of the positives (over the union of their indices), and with
    negatives ``2 * mean(positive) - mean(negative)``."""
    def mean(vectors: list[tuple[str, Any]]) -> dict[int, float]:
        total: dict[int, float] = {}
        for _, (indices, values) in vectors:
            for i, v in zip(indices.tolist(), values.tolist(), strict=True):
                total[i] = total.get(i, 0.0) + v
        return {i: v / len(vectors) for i, v in total.items()}
    pos = mean(positive)
    if negative:
        neg = mean(negative)
        pos = {i: pos.get(i, 0.0) * 2 - neg.get(i, 0.0) for i in sorted(set(pos) | set(neg))}
    keys = sorted(pos)
    return np.asarray(keys, np.uint32), np.asarray([pos[k] for k in keys], np.float32)


def _quantization_params(raw: object, path: str) -> QuantizedSearch | None:
    """Qdrant's ``QuantizationSearchParams``: ``ignore`` (search the float32 vectors only), ``rescore``
    (default true) and ``oversampling`` (>= 1; this server's default is 2: measured, docs/decisions/0003)."""
    if raw is None:
        return None
    q = p.obj(raw, path)
    p.fields(q, path, ("ignore", "rescore", "oversampling"))
    ignore = False if q.get("ignore") is None else p.boolean(q["ignore"], f"{path}.ignore")
    rescore = True if q.get("rescore") is None else p.boolean(q["rescore"], f"{path}.rescore")
    oversampling = DEFAULT_OVERSAMPLING
    if q.get("oversampling") is not None:
        oversampling = p.number(q["oversampling"], f"{path}.oversampling")
        if oversampling < 1:
            raise Unprocessable(f"Validation error in JSON body: [{path}.oversampling: value {oversampling} invalid, "
                                f"must be 1.0 or larger]")
    return QuantizedSearch(ignore, rescore, oversampling)


# Answers ---------------------------------------------------------------------------------
def run(coll: Collection, q: Parsed) -> list[dict[str, Any]]:
    """Execute a parsed query; ``ScoredPoint`` objects, best first."""
    with reads.reading(coll):  # the hits and their records from one state
        try:
            hits = plans.execute(coll, q.plan)
        except ValueError as exc:
            raise BadRequest(f"Bad request: {exc}") from None
        return _scored(coll, hits, q.view, q.with_vector)


def _scored(coll: Collection, hits: list[plans.Scored], view: PayloadView,
            with_vector: VectorSelector) -> list[dict[str, Any]]:
    out = records(coll, [h.id for h in hits], view, with_vector, [h.score for h in hits])
    if any(h.order_value is not None for h in hits):
        values = {h.id: h.order_value for h in hits}
        for rec in out:
            rec["order_value"] = values[rec["id"]]
    return out


def grouped(coll: Collection, q: Parsed, b: dict[str, Any], lookup: Lookup) -> list[dict[str, Any]]:
    """Qdrant's groups: hits grouped by the values of the payload key ``group_by`` (a point with several
    values joins each group), ``limit`` groups of up to ``group_size`` hits, groups in the order of their
    best hit; ``with_lookup``: each group's id looked up in another collection."""
    key = p.string(b.get("group_by"), "group_by")
    path = paths.parse(key, field="group_by")
    size = 3 if b.get("group_size") is None else p.at_least_one(b["group_size"], "group_size")
    groups_wanted = q.plan.limit
    # Qdrant asks for more hits than groups x size and repeats while groups are short; a generous
    # single pass over the candidates, bounded, is what local mode's answer amounts to here.
    wide = replace(q.plan, limit=min(p.MAX_RESULTS, max(groups_wanted * size * 4, 100) + q.plan.offset), offset=0)
    hits = plans.execute(coll, wide)
    order: list[Any] = []
    members: dict[Any, list[plans.Scored]] = {}
    for hit in hits:
        label = coll.label_of.get(hit.id)
        payload = coll.payload_of.get(label) if label is not None else None
        for value in _group_values(payload, path):
            if value not in members:
                if len(order) >= groups_wanted:
                    continue
                members[value] = []
                order.append(value)
            if len(members[value]) < size:
                members[value].append(hit)
    out = []
    for value in order:
        out.append({"id": value, "hits": _scored(coll, members[value], q.view, q.with_vector)})
    if b.get("with_lookup") is not None:
        _with_lookup(out, b["with_lookup"], lookup)
    return out


def _group_values(payload: dict[str, Any] | None, path: paths.Path) -> list[Any]:
    """The group ids of a point: the string or integer values at ``path`` (each element of an array)."""
    if not payload:
        return []
    found = []
    for value in paths.values(payload, path):
        for item in value if isinstance(value, list) else [value]:
            groupable = isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool))
            if groupable and item not in found:
                found.append(item)
    return found


def _with_lookup(groups: list[dict[str, Any]], raw: object, lookup: Lookup) -> None:
    spec = {"collection": raw} if isinstance(raw, str) else p.obj(raw, "with_lookup")
    p.fields(spec, "with_lookup", ("collection", "with_payload", "with_vectors", "with_vector"))
    other = lookup(p.string(spec.get("collection"), "with_lookup.collection"))
    view = payload_view(spec.get("with_payload"), "with_lookup.with_payload", default=True)
    with_vector = wants_vector(spec.get("with_vectors", spec.get("with_vector")), "with_lookup.with_vectors")
    ids: list[PointId | None] = []
    for group in groups:
        try:
            ids.append(p.point_id(group["id"], "group id"))
        except ValueError:
            ids.append(None)
    with reads.reading(other):
        found = {rec["id"]: rec for rec in records(other, [pid for pid in ids if pid is not None], view, with_vector)}
    for group, pid in zip(groups, ids, strict=True):
        if pid in found:
            group["lookup"] = found[pid]
