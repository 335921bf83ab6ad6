"""Nearest-neighbour queries: ``/points/query``, ``/points/query/batch`` and the older ``/points/search``.

Scores are Qdrant's: cosine similarity and dot product (higher is better), Euclidean
distance (lower is better). A filter is applied inside the search, never after cutting
the top-k. A query given as a point id searches with that point's vector and leaves the
point itself out, as Qdrant does. Without ``query``, points come in id order with score 1.
``score_threshold`` keeps hits strictly better than it (Qdrant's and qdrant-client's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from projections import query as reads
from projections.collection import Collection
from projections.errors import PointNotFound
from projections.filters import Filter
from projections.index.quantized import DEFAULT_OVERSAMPLING, QuantizedSearch
from projections.search import search
from schemas.ids import PointId
from vectorizer.api import parsing as p
from vectorizer.api.context import Api, api, body, json_body, ok
from vectorizer.api.errors import BadRequest, Unprocessable
from vectorizer.api.records import PayloadView, payload_view, records, wants_vector
from vectorizer.api.routes.reads import ReadOptions, read_options, readable

router = APIRouter(tags=["search"])

_QUERY_FIELDS = ("query", "filter", "params", "score_threshold", "limit", "offset", "with_payload", "with_vector",
                 "using", "prefetch", "lookup_from", "shard_key", "consistency")
_SEARCH_FIELDS = ("vector", "filter", "params", "score_threshold", "limit", "offset", "with_payload", "with_vector",
                  "shard_key", "consistency")


@dataclass(frozen=True)
class Nearest:
    """One parsed query; ``vector`` is ``None`` for "points in id order"."""

    vector: np.ndarray | None
    exclude: PointId | None
    flt: Filter | None
    limit: int
    offset: int
    ef: int | None
    exact: bool
    score_threshold: float | None
    view: PayloadView
    with_vector: bool
    quantized: QuantizedSearch | None = None  # params.quantization


@router.post("/collections/{collection_name}/points/query", summary="Nearest points to a vector (or a point)",
             openapi_extra=json_body("query, filter, limit, offset, with_payload, with_vector, score_threshold, "
                                               "params {hnsw_ef, exact}, consistency"))
def query(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
          b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    coll = readable(a, collection_name, opts, b)
    with reads.reading(coll):  # one state for the query point, the hits and their records
        points = run(coll, parse_query(coll, b, ""))
    return ok(request, {"points": points})


@router.post("/collections/{collection_name}/points/query/batch", summary="Several queries at once",
             openapi_extra=json_body("searches: [query requests], consistency"))
def query_batch(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    p.fields(b, "", ("searches", "consistency"))
    coll = readable(a, collection_name, opts, b)
    searches = p.array(b.get("searches"), "searches")
    with reads.reading(coll):  # every query of the batch against one state
        parsed = [parse_query(coll, p.obj(s, f"searches[{i}]"), f"searches[{i}].") for i, s in enumerate(searches)]
        answers = [{"points": run(coll, q)} for q in parsed]
    return ok(request, answers)


@router.post("/collections/{collection_name}/points/search", summary="Nearest points to a vector (older API)",
             openapi_extra=json_body("vector, filter, limit, offset, with_payload, with_vector, score_threshold, "
                                               "params, consistency"))
def search_points(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                  b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    p.fields(b, "", _SEARCH_FIELDS)
    p.unsupported(b, "shard_key")
    coll = readable(a, collection_name, opts, b)
    raw = b.get("vector")
    if isinstance(raw, dict) and set(raw) == {"name", "vector"}:
        if raw["name"] != "":
            raise BadRequest("vector.name: named vectors are not supported")
        raw = raw["vector"]
    if raw is None:
        raise BadRequest("vector: required")
    vector = p.vector(raw, "vector", coll.config.dimension)
    with reads.reading(coll):
        hits = run(coll, nearest(coll, b, "", vector, None))
    return ok(request, hits)


def parse_query(coll: Collection, b: dict[str, Any], path: str) -> Nearest:
    p.fields(b, path.rstrip("."), _QUERY_FIELDS)
    for name in ("prefetch", "lookup_from", "shard_key"):
        if b.get(name) is not None:
            raise BadRequest(f"{path}{name}: not supported by this server")
    if b.get("using") not in (None, ""):
        raise BadRequest(f"{path}using: named vectors are not supported")
    raw = b.get("query")
    if isinstance(raw, dict):
        p.fields(raw, f"{path}query", ("nearest", "mmr"))
        if raw.get("mmr") is not None:
            raise BadRequest(f"{path}query.mmr: not supported by this server")
        if "nearest" not in raw:
            raise BadRequest(f"{path}query: only nearest-vector queries are supported")
        raw, where = raw["nearest"], f"{path}query.nearest"
    else:
        where = f"{path}query"
    if raw is None:
        return nearest(coll, b, path, None, None)
    if isinstance(raw, (int, str)) and not isinstance(raw, bool):
        pid = p.point_id(raw, where)
        vector = reads.vector(coll, pid)
        if vector is None:
            raise PointNotFound(f"Not found: No point with id {pid} found")
        return nearest(coll, b, path, np.asarray(vector, np.float32), pid)
    return nearest(coll, b, path, p.vector(raw, where, coll.config.dimension), None)


def nearest(coll: Collection, b: dict[str, Any], path: str, vector: np.ndarray | None,
            exclude: PointId | None) -> Nearest:
    ef, exact, quantized = None, False, None
    if b.get("params") is not None:
        params = p.obj(b["params"], f"{path}params")
        p.fields(params, f"{path}params", ("hnsw_ef", "exact", "quantization"), ignored=("indexed_only", "acorn"))
        quantized = _quantization_params(params.get("quantization"), f"{path}params.quantization")
        if params.get("hnsw_ef") is not None:
            ef = p.integer(params["hnsw_ef"], f"{path}params.hnsw_ef", minimum=1)
        if params.get("exact") is not None:
            exact = p.boolean(params["exact"], f"{path}params.exact")
    limit, offset = p.limit(b, path, 10), p.offset(b, path)
    if limit + offset > p.MAX_RESULTS:
        raise BadRequest(f"{path}limit: limit + offset must not exceed {p.MAX_RESULTS}")
    threshold = None if b.get("score_threshold") is None else p.number(b["score_threshold"],
                                                                       f"{path}score_threshold")
    return Nearest(vector, exclude, p.filter_of(b.get("filter"), f"{path}filter"), limit, offset,
                   ef, exact, threshold, payload_view(b.get("with_payload"), f"{path}with_payload", default=False),
                   wants_vector(b.get("with_vector"), f"{path}with_vector"), quantized)


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


def run(coll: Collection, q: Nearest) -> list[dict[str, Any]]:
    """Execute a parsed query; ``ScoredPoint`` objects, best first."""
    with reads.reading(coll):  # the hits and their records from one state
        if q.vector is None:
            ids = reads.first_by_id(coll, q.flt, q.limit + q.offset)[q.offset:]
            return records(coll, ids, q.view, q.with_vector, [1.0] * len(ids))
        flt = q.flt if q.exclude is None else Filter.without(q.flt, q.exclude)  # not the query point itself
        hits = search(coll, q.vector, q.limit, ef=q.ef, flt=flt, exact=q.exact, offset=q.offset,
                      quantized=q.quantized)
        hits = reads.better_than(hits, q.score_threshold, coll.index.higher_is_better())
        return records(coll, [h.id for h in hits], q.view, q.with_vector, [h.score for h in hits])
