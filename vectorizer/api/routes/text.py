"""Text search: ``POST /collections/{c}/search/text`` embeds the query with the collection's own
embedder (its definition is on the log with the collection) and searches like ``points/query``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from infra.errors import ConfigurationError
from projections import query
from projections.collection import Collection
from vectorizer import embedders
from vectorizer.api import parsing as p
from vectorizer.api.context import Api, api, body, json_body, ok
from vectorizer.api.errors import BadRequest
from vectorizer.api.routes.query import parse_query, run
from vectorizer.api.routes.reads import ReadOptions, read_options, readable

router = APIRouter(tags=["search"])
_FIELDS = ("query", "filter", "limit", "offset", "with_payload", "with_vector", "score_threshold", "params",
           "consistency")


@router.post("/collections/{collection_name}/search/text", summary="Nearest points to a text",
             openapi_extra=json_body("query (text), filter, limit, offset, with_payload (default true), "
                                     "with_vector, score_threshold, params {hnsw_ef, exact}, consistency"))
def search_text(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
                b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    p.fields(b, "", _FIELDS)
    coll = readable(a, collection_name, opts, b)
    text = b.get("query")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("query: expected a non-empty text")
    vector = embedder_of(coll).embed([text])[0]
    if not vector.any():
        raise BadRequest("query: no words to search for")
    rest = {k: v for k, v in b.items() if k != "query"}
    q = parse_query(coll, {"with_payload": True, **rest, "query": vector.tolist()}, "", a.collection)
    with query.reading(coll):
        points = run(coll, q)
    return ok(request, {"points": points})


def embedder_of(coll: Collection) -> embedders.Embedder:
    if not coll.config.embedder:
        raise BadRequest(f"collection {coll.name!r} has no embedder: search it with a vector (points/query)")
    try:
        return embedders.build(coll.config.embedder)
    except ConfigurationError as exc:
        raise BadRequest(f"collection {coll.name!r}: {exc}") from None
