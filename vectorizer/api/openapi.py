"""The OpenAPI document the server serves at ``/openapi.json``, made to tell the truth.

Routes read their JSON bodies themselves (msgspec, ``vectorizer.api.context.body``), so FastAPI
knows nothing of them; and FastAPI documents a 422 ``HTTPValidationError`` no route answers.
:func:`document` takes FastAPI's document and

- gives every JSON body its real schema: Qdrant's own for Qdrant's routes
  (:mod:`vectorizer.api.qdrant_schemas`), with Vectorizer's ``consistency`` field added on reads;
  Vectorizer's for its own routes (:data:`VECTORIZER_SCHEMAS`);
- replaces FastAPI's 422 with the error answers the route can give, each in Qdrant's
  ``ErrorResponse`` envelope (``{"status": {"error": "..."}, "time": s}``), by the rules of
  :func:`error_statuses` (which follow ``vectorizer.api.errors``, ``auth``, ``limits``, ``paths``);
- declares the ``api-key`` header (and ``Authorization: Bearer``) as security schemes, required
  when the server has a key, so Swagger UI's "Authorize" button sends it.

A route added with a JSON body and no entry in :data:`BODIES` keeps ``{"type": "object"}``,
which ``tests/api/test_openapi.py`` refuses.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from infra.settings import Settings
from vectorizer.api.auth import is_read
from vectorizer.api.qdrant_schemas import schemas as qdrant_schemas

_REF = "#/components/schemas/"
_C = "/collections/{collection_name}"

#: The body of each route that reads one: a Qdrant schema name, or one of :data:`VECTORIZER_SCHEMAS`.
BODIES: dict[tuple[str, str], str] = {
    ("PUT", _C): "VectorizerCreateCollection",
    ("PATCH", _C): "UpdateCollection",
    ("POST", "/collections/aliases"): "ChangeAliasesOperation",
    ("PUT", f"{_C}/index"): "CreateFieldIndex",
    ("POST", f"{_C}/facet"): "FacetRequest",
    ("POST", f"{_C}/points/search/matrix/pairs"): "SearchMatrixRequest",
    ("POST", f"{_C}/points/search/matrix/offsets"): "SearchMatrixRequest",
    ("PUT", f"{_C}/points"): "PointInsertOperations",
    ("PUT", f"{_C}/points/vectors"): "UpdateVectors",
    ("POST", f"{_C}/points/vectors/delete"): "DeleteVectors",
    ("POST", f"{_C}/points/delete"): "PointsSelector",
    ("POST", f"{_C}/points/payload"): "SetPayload",
    ("PUT", f"{_C}/points/payload"): "SetPayload",
    ("POST", f"{_C}/points/payload/delete"): "DeletePayload",
    ("POST", f"{_C}/points/payload/clear"): "PointsSelector",
    ("POST", f"{_C}/points/batch"): "UpdateOperations",
    ("POST", f"{_C}/points/query"): "QueryRequest",
    ("POST", f"{_C}/points/query/batch"): "QueryRequestBatch",
    ("POST", f"{_C}/points/query/groups"): "QueryGroupsRequest",
    ("POST", f"{_C}/points/search"): "SearchRequest",
    ("POST", f"{_C}/points/search/batch"): "SearchRequestBatch",
    ("POST", f"{_C}/points/search/groups"): "SearchGroupsRequest",
    ("POST", f"{_C}/points"): "PointRequest",
    ("POST", f"{_C}/points/scroll"): "ScrollRequest",
    ("POST", f"{_C}/points/count"): "CountRequest",
    ("PUT", f"{_C}/snapshots/recover"): "SnapshotRecover",
    ("POST", f"{_C}/search/text"): "VectorizerTextSearch",
    ("PUT", f"{_C}/points/text"): "VectorizerTextUpsert",
}

_CONSISTENCY = {"description": "Vectorizer: a write token (a write's write_token, '<partition>:<offset>') that "
                               "this server must have applied before it answers; Qdrant's consistency values "
                               "(a positive integer, 'majority', 'quorum', 'all') are accepted and need no wait",
                "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1},
                          {"type": "object", "properties": {"type": {}}, "required": ["type"]}]}

#: Vectorizer's own body schemas (beside Qdrant's).
VECTORIZER_SCHEMAS: dict[str, Any] = {
    "VectorizerCreateCollection": {
        "description": "Qdrant's CreateCollection, plus Vectorizer's embedder for text collections",
        "allOf": [{"$ref": f"{_REF}CreateCollection"}, {
            "type": "object", "properties": {"embedder": {
                "type": "object", "required": ["name"],
                "description": "Fills the unnamed vector from texts (points/text, search/text, the MCP text "
                               "tools); its dimension must be the vector's size",
                "properties": {"name": {"type": "string", "enum": ["hashing", "all-minilm-l6-v2"]},
                               "dimension": {"type": "integer", "minimum": 8, "maximum": 65536},
                               "ngrams": {"type": "integer", "minimum": 1, "maximum": 3},
                               "seed": {"type": "integer", "minimum": 0},
                               "version": {"type": "integer", "enum": [1]}}}}}]},
    "VectorizerTextUpsert": {
        "description": "Points from texts, each embedded with the collection's embedder and kept in its payload "
                       "under 'text' (unless the payload has one)",
        "type": "object", "required": ["points"],
        "properties": {"points": {"type": "array", "items": {
            "type": "object", "required": ["id", "text"],
            "properties": {"id": {"$ref": f"{_REF}ExtendedPointId"}, "text": {"type": "string", "minLength": 1},
                           "payload": {"$ref": f"{_REF}Payload"}}}}}},
    "VectorizerReadOptions": {
        "description": "Vectorizer's field of every read body, beside Qdrant's",
        "type": "object", "properties": {"consistency": _CONSISTENCY}},
    "VectorizerTextSearch": {
        "description": "Nearest points to a text, embedded by the collection's embedder (workspace collections)",
        "type": "object", "required": ["query"],
        "properties": {
            "query": {"type": "string", "minLength": 1, "description": "The text to search for"},
            "mode": {"type": "string", "enum": ["dense", "sparse", "hybrid", "auto"], "default": "dense",
                     "description": "dense vectors, sparse terms, both fused by reciprocal rank, or hybrid "
                                    "when the collection has a sparse embedder (auto)"},
            "filter": {"$ref": f"{_REF}Filter"},
            "limit": {"type": "integer", "minimum": 1, "default": 10},
            "offset": {"type": "integer", "minimum": 0, "default": 0},
            "with_payload": {"$ref": f"{_REF}WithPayloadInterface", "description": "default: true"},
            "with_vector": {"$ref": f"{_REF}WithVector"},
            "score_threshold": {"type": "number"},
            "params": {"$ref": f"{_REF}SearchParams"},
            "consistency": _CONSISTENCY}},
}

#: Qdrant's read bodies: Vectorizer also reads ``consistency`` in them.
_READ_BODIES = {"PointRequest", "ScrollRequest", "CountRequest", "FacetRequest", "SearchMatrixRequest",
                "QueryRequest", "QueryRequestBatch", "QueryGroupsRequest", "SearchRequest",
                "SearchRequestBatch", "SearchGroupsRequest"}

#: Routes that answer without the projection being ready (no 503).
_ALWAYS_SERVED = {("GET", "/"), ("GET", "/health"), ("GET", "/metrics"), ("GET", "/cluster"),
                  ("GET", "/vectorizer/status"), ("GET", "/vectorizer/snapshots"), ("GET", "/vectorizer/verify"),
                  ("GET", "/vectorizer/latency")}
#: Routes that create what may exist already, or run what may be running already (409).
_CONFLICTS = {("PUT", _C), ("POST", "/collections/aliases"), ("POST", "/vectorizer/verify"),
              ("POST", "/vectorizer/workspace/sync")}
#: Routes without a path parameter that may not find what they name (404).
_FINDS = {("POST", "/vectorizer/verify"), ("POST", "/vectorizer/workspace/sync")}
#: Routes that answer a missing collection without a 404 (``false``).
_NO_404 = {("GET", f"{_C}/exists"), ("DELETE", _C)}
#: Writes that wait for the projector and may give up (504); other writes answer ``wait_timeout``.
_WAITING_WRITES = {("POST", f"{_C}/snapshots"), ("POST", "/snapshots"), ("POST", "/vectorizer/snapshots")}

_ERRORS = {
    400: "Bad request: a body, path or query value that does not parse, or a mistake the projection "
         "refuses (the message names the field)",
    401: "Missing or wrong API key (when the server has one)",
    403: "The read-only API key on a write, or a write to a read-only (workspace) collection",
    404: "Not found: the collection (or point, snapshot, index) does not exist",
    409: "It already exists, or the same operation is already running on this server",
    413: "The request body exceeds the server's limit (VECTORIZER_MAX_BODY_BYTES)",
    422: "Validation error: a value out of its range (query, path or body), as Qdrant answers",
    500: "A bug: see the server log",
    503: "Not ready (recovery has not caught up with the log), or Kafka does not answer; retry after Retry-After",
    504: "The wait (timeout, consistency token, wait=true) ended before this server applied the write",
}


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses ``method path`` can answer, from what the route takes."""
    params = {p["name"] for p in operation.get("parameters", ())}
    has_body = "requestBody" in operation
    sample = re.sub(r"\{[^}]+\}", "x", path)
    statuses = {401, 500}
    if has_body or params:
        statuses |= {400, 422}
    if has_body:
        statuses.add(413)
    if not is_read(method, sample):
        statuses.add(403)
    if "{" in path:
        statuses.add(422)  # a collection name Qdrant refuses (vectorizer.api.paths)
        if (method, path) not in _NO_404:
            statuses.add(404)
    if (method, path) not in _ALWAYS_SERVED:
        statuses.add(503)
    if (method, path) in _FINDS:
        statuses.add(404)
    if (method, path) in _CONFLICTS:
        statuses.add(409)
    reads = is_read(method, sample)
    if (reads and ("consistency" in params or has_body)) or (method, path) in _WAITING_WRITES:
        statuses.add(504)  # a consistency token (or a snapshot) not reached in time
    return sorted(statuses)


def document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """``app``'s OpenAPI document, with real bodies, real error answers and the API key schemes."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {})
    found = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        found.pop(name, None)
    found.update(qdrant_schemas())
    found.update(VECTORIZER_SCHEMAS)
    components["securitySchemes"] = {
        "api-key": {"type": "apiKey", "in": "header", "name": "api-key",
                    "description": "The API key (or the read-only key), as qdrant-client sends it"},
        "bearer": {"type": "http", "scheme": "bearer", "description": "The same key as Authorization: Bearer"}}
    if settings.api_key or settings.read_only_api_key:
        doc["security"] = [{"api-key": []}, {"bearer": []}]
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            _describe(method.upper(), path, operation)
    return doc


def _describe(method: str, path: str, operation: dict[str, Any]) -> None:
    name = BODIES.get((method, path))
    content = operation.get("requestBody", {}).get("content", {})
    if name is not None and "application/json" in content:
        schema: dict[str, Any] = {"$ref": f"{_REF}{name}"}
        if name in _READ_BODIES:
            schema = {"allOf": [schema, {"$ref": f"{_REF}VectorizerReadOptions"}]}
        content["application/json"]["schema"] = schema
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # FastAPI's HTTPValidationError: never answered as such
    for status in error_statuses(method, path, operation):
        responses[str(status)] = {"description": _ERRORS[status],
                                  "content": {"application/json": {"schema": {"$ref": f"{_REF}ErrorResponse"}}}}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve :func:`document` at ``/openapi.json`` (built once, on first request)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
