"""Qdrant's distance matrix: ``/points/search/matrix/pairs`` and ``/points/search/matrix/offsets``.

Both take Qdrant's ``SearchMatrixRequest``: ``filter``, ``sample`` (10, at least 2), ``limit``
(3, at least 1), ``using`` (the unnamed vector unless given) and ``shard_key`` (a 400 here, as on
every read: this server has no shards); ``consistency`` as every read. The answer is computed by
:func:`projections.matrix.distance_matrix` from one state of the collection; ``pairs`` lists
``{a, b, score}`` row by row, ``offsets`` the same matrix as coordinates into ``ids``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from projections.matrix import Matrix, distance_matrix
from vectorizer.api import parsing as p
from vectorizer.api.context import Api, api, body, json_body, ok
from vectorizer.api.errors import Unprocessable
from vectorizer.api.routes.reads import ReadOptions, read_options, readable
from vectorizer.api.vectors import check_name

router = APIRouter(tags=["search"])

_FIELDS = ("filter", "sample", "limit", "using", "shard_key", "consistency")
_DOC = json_body("filter, sample (10), limit (3), using, consistency")


@router.post("/collections/{collection_name}/points/search/matrix/pairs",
             summary="Distance matrix of sampled points, as pairs", openapi_extra=_DOC)
def matrix_pairs(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                 b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    found = _matrix(a, collection_name, opts, b)
    pairs = [{"a": pid, "b": hit.id, "score": hit.score}
             for pid, row in zip(found.ids, found.nearest, strict=True) for hit in row]
    return ok(request, {"pairs": pairs})


@router.post("/collections/{collection_name}/points/search/matrix/offsets",
             summary="Distance matrix of sampled points, as offsets into their ids", openapi_extra=_DOC)
def matrix_offsets(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                   b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    found = _matrix(a, collection_name, opts, b)
    offset_of = {pid: i for i, pid in enumerate(found.ids)}
    rows, cols, scores = [], [], []
    for row, hits in enumerate(found.nearest):
        for hit in hits:
            rows.append(row)
            cols.append(offset_of[hit.id])
            scores.append(hit.score)
    return ok(request, {"offsets_row": rows, "offsets_col": cols, "scores": scores, "ids": found.ids})


def _matrix(a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any]) -> Matrix:
    p.fields(b, "", _FIELDS)
    p.unsupported(b, "shard_key")
    sample = _count(b, "sample", 10, minimum=2)  # Qdrant validates the body before it finds the collection
    limit = _count(b, "limit", 3, minimum=1)
    coll = readable(a, collection_name, opts, b)
    using = "" if b.get("using") is None else p.string(b["using"], "using")
    check_name(coll.config, using)
    return distance_matrix(coll, p.filter_of(b.get("filter"), "filter", coll), sample, limit, using)


def _count(b: dict[str, Any], name: str, default: int, *, minimum: int) -> int:
    """A non-negative integer field (400 otherwise); below ``minimum``: Qdrant's 422 validation error."""
    if b.get(name) is None:
        return default
    value = p.integer(b[name], name)
    if value < minimum:
        raise Unprocessable(f"Validation error in JSON body: [{name}: value {value} invalid, must be {minimum} "
                            f"or larger]")
    return value
