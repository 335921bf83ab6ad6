"""Payload indexes and facets (Qdrant's REST shapes).

``PUT /collections/{c}/index`` and ``DELETE /collections/{c}/index/{field}`` publish an event
(``PayloadIndexCreated`` / ``PayloadIndexDropped``), so every replica and every replay builds
the same indexes; they answer Qdrant's ``UpdateResult`` plus ``write_token``, and with
``wait=true`` once this server built (or dropped) the index. ``POST /collections/{c}/facet``
counts the values of an indexed keyword, uuid, integer or bool field among the points a
filter matches.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from projections import query
from schemas import paths
from schemas import validation as check
from vectorizer.api import parsing as p
from vectorizer.api.context import Api, api, body, json_body, ok
from vectorizer.api.errors import BadRequest
from vectorizer.api.routes.points import WriteOptions, write_options
from vectorizer.api.routes.reads import ReadOptions, read_options, readable

router = APIRouter(tags=["indexes"])

_FACET_TYPES = ("keyword", "uuid", "integer", "bool")


@router.put("/collections/{collection_name}/index", summary="Create a payload index on a field",
            openapi_extra=json_body("field_name, field_schema: a type name (keyword, integer, float, bool, geo, "
                                    "text, datetime, uuid) or its parameters {type, ...}"))
def create_index(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                 b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    p.fields(b, "", ("field_name", "field_schema"))
    if b.get("field_name") is None:
        raise BadRequest("field_name: required")
    field = check.payload_path(b["field_name"], field="field_name")
    if b.get("field_schema") is None:
        raise BadRequest("Bad request: Can't auto-detect field type, please specify `field_schema` in the request")
    check.payload_field_schema(b["field_schema"])  # a bad body is a 400 before the collection's 404
    a.collection(collection_name)
    token = producer.create_payload_index(collection_name, field, b["field_schema"])
    return ok(request, a.write_result(collection_name, token, opts.wait, opts.timeout))


@router.delete("/collections/{collection_name}/index/{field_name}", summary="Delete a payload index")
def delete_index(request: Request, collection_name: str, field_name: str,
                 opts: WriteOptions = Depends(write_options), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    field = check.payload_path(field_name, field="field_name")
    a.collection(collection_name)
    token = producer.delete_payload_index(collection_name, field)
    return ok(request, a.write_result(collection_name, token, opts.wait, opts.timeout))


@router.post("/collections/{collection_name}/facet", summary="Count the values of an indexed field",
             openapi_extra=json_body("key, limit (10), filter, exact, consistency"))
def facet(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
          b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    p.fields(b, "", ("key", "limit", "filter", "exact", "shard_key", "consistency"))
    p.unsupported(b, "shard_key")
    if b.get("exact") is not None:
        p.boolean(b["exact"], "exact")  # facets are always exact here
    if b.get("key") is None:
        raise BadRequest("key: required")
    path = paths.parse(b["key"], field="key")
    size = p.limit(b, "", 10)
    coll = readable(a, collection_name, opts, b)
    flt = p.filter_of(b.get("filter"), coll=coll)
    with query.reading(coll):
        index = coll.indexes.get(path)
        if index is None or index.type not in _FACET_TYPES:
            raise BadRequest(f"Wrong input: No appropriate index for faceting: `{b['key']}`. Please create one "
                             "to facet on this field. Check https://qdrant.tech/documentation/concepts/indexing/"
                             "#payload-index to see which payload schemas support Match conditions")
        counts = index.counts(None if flt is None else query.matching_labels(coll, flt))
    counts.sort(key=lambda hit: (-hit[1], hit[0]))
    return ok(request, {"hits": [{"value": value, "count": n} for value, n in counts[:size]]})
