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
from vectorizer.api.routes.points import WriteOptions, known_points, prepare_upsert, write_options
from vectorizer.api.routes.query import parse_query, run
from vectorizer.api.routes.reads import ReadOptions, read_options, readable

router = APIRouter(tags=["search"])
_FIELDS = ("query", "mode", "filter", "limit", "offset", "with_payload", "with_vector", "score_threshold", "params",
           "consistency")
_MODES = ("dense", "sparse", "hybrid", "auto")
#: Hybrid: each of the two searches hands this many candidates (at least) to the fusion.
HYBRID_CANDIDATES = 50


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
    mode = b.get("mode") or "dense"
    if mode not in _MODES:
        raise BadRequest(f"mode: expected one of {', '.join(_MODES)}, got {p.show(mode)}")
    sparse = sparse_embedder_of(coll, required=mode in ("sparse", "hybrid"))
    if mode == "auto":
        mode = "dense" if sparse is None else "hybrid"
    rest = {k: v for k, v in b.items() if k not in ("query", "mode")}
    vector = embedder_of(coll).embed([text])[0] if mode != "sparse" else None
    if vector is not None and not vector.any():
        raise BadRequest("query: no words to search for")
    terms = None
    if sparse is not None and mode != "dense":
        indices, values = sparse.embed_query(text)
        terms = {"indices": indices.tolist(), "values": values.tolist()}
    body: dict[str, Any] = {"with_payload": True, **rest}
    if mode == "dense":
        body["query"] = vector.tolist()  # type: ignore[union-attr]
    elif mode == "sparse":
        assert sparse is not None
        body.update(query=terms, using=sparse.vector)
    else:  # dense and sparse candidates, fused by reciprocal rank
        assert sparse is not None and vector is not None
        wide = max(HYBRID_CANDIDATES, 2 * (p.limit(b, "", 10) + p.offset(b, "")))
        inner = {k: rest[k] for k in ("filter", "params") if k in rest}
        body["prefetch"] = [{"query": vector.tolist(), "limit": wide, **inner},
                            {"query": terms, "using": sparse.vector, "limit": wide,
                             **({"filter": rest["filter"]} if "filter" in rest else {})}]
        body["query"] = {"fusion": "rrf"}
        body.pop("params", None)
        body.pop("filter", None)  # given to both searches
    q = parse_query(coll, body, "", a.collection)
    with query.reading(coll):
        points = run(coll, q)
    return ok(request, {"points": points})


@router.put("/collections/{collection_name}/points/text", summary="Upsert points from texts (embedded here)",
             openapi_extra=json_body("points: [{id, text, payload}]: each text embedded with the collection's "
                                     "embedder and kept in the payload under 'text' (unless the payload has one)"))
def upsert_texts(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                 b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    known = known_points(a, collection_name)
    embedder = embedder_of(known.coll)
    p.fields(b, "", ("points",))
    points = p.array(b.get("points"), "points")
    texts, rest = [], []
    for i, raw in enumerate(points):
        point = p.obj(raw, f"points[{i}]")
        p.fields(point, f"points[{i}]", ("id", "text", "payload"))
        text = point.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(f"points[{i}].text: expected a non-empty text")
        payload = p.payload(point.get("payload"), f"points[{i}].payload") or {}
        texts.append(text)
        rest.append({"id": point.get("id"), "payload": {"text": text, **payload}})
    rows: list[Any] = list(embedder.embed(texts)) if texts else []
    upsert = {"points": [{**point, "vector": row.tolist()} for point, row in zip(rest, rows, strict=True)]}
    write = prepare_upsert(a, collection_name, upsert, known)
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def sparse_embedder_of(coll: Collection, *, required: bool) -> embedders.BM25Embedder | None:
    """The collection's sparse embedder (None: it has none; ``required``: a 400 then)."""
    try:
        sparse = embedders.build_sparse(coll.config.embedder) if coll.config.embedder else None
    except ConfigurationError as exc:
        raise BadRequest(f"collection {coll.name!r}: {exc}") from None
    if sparse is None and required:
        raise BadRequest(f"mode: collection {coll.name!r} has no sparse embedder (sparse and hybrid text search need "
                         f"one: a workspace collection with embedding.sparse: bm25)")
    if sparse is not None and sparse.vector not in coll.sparse:
        raise BadRequest(f"collection {coll.name!r}: its sparse embedder fills {sparse.vector!r}, which it lacks")
    return sparse


def embedder_of(coll: Collection) -> embedders.Embedder:
    if not coll.config.embedder:
        raise BadRequest(f"collection {coll.name!r} has no embedder: search it with a vector (points/query)")
    try:
        return embedders.build(coll.config.embedder)
    except ConfigurationError as exc:
        raise BadRequest(f"collection {coll.name!r}: {exc}") from None
