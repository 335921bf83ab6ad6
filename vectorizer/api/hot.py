"""The hot lane: the requests a vector database answers most, without FastAPI's per-request machinery.

Measured in process at 20K x 128 (benchmarks/NOTES.md, issue 21): a ``points/search`` took 4.2 ms
of server time, of which the search is 0.1 ms; the rest was FastAPI's route matching over the
app's routes, its dependency solving and the hop to a worker thread. This ASGI layer sits
innermost of the middlewares (keys, body limit, aliases, the read-only rule and the path checks
have run) and answers, with the routes' own functions:

- ``POST /collections/{c}/points/search``, ``.../points/query`` and ``POST .../points`` (retrieve),
  without ``consistency`` (which waits): run on the event loop, in a :func:`never_wait` mark; when a
  lock would have to wait (the projector is applying a write), in a worker thread instead;
- ``PUT /collections/{c}/points`` (upsert): in a worker thread (it waits for Kafka).

Only requests whose query string it reads exactly as FastAPI would (``timeout`` as a plain
number in range; for upserts also ``wait=true|false`` and ``ordering``) take the lane; every other
request goes to FastAPI untouched. So do requests the lane's attempt refuses, with the body it
read: a refused request is answered by the FastAPI route, so errors, their messages and the
OpenAPI document stay the routes' own. An upsert is only handed on before anything is published;
once published its errors are answered here, by the same error table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from projections.waiting import WouldBlock, never_wait
from vectorizer.api.context import Api, ok_body
from vectorizer.api.errors import response_for
from vectorizer.api.parsing import MAX_TIMEOUT_SECONDS, load_body
from vectorizer.api.routes import points, query, reads
from vectorizer.api.routes.points import known_points, prepare_upsert
from vectorizer.api.routes.query import query_page, search_hits
from vectorizer.api.routes.reads import ReadOptions, retrieve

_PATH = re.compile(r"^/collections/([^/]+)/points(/search|/query)?$")
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_BOOLEAN = {"true": True, "false": False}
_INLINE_BYTES = 64 * 1024  # larger bodies are parsed in a worker thread, as FastAPI's routes do

#: (method, path suffix) -> the route template FastAPI would have matched (for the latency metrics).
_TEMPLATES = {("POST", "/search"): "/collections/{collection_name}/points/search",
              ("POST", "/query"): "/collections/{collection_name}/points/query",
              ("POST", ""): "/collections/{collection_name}/points",
              ("PUT", ""): "/collections/{collection_name}/points"}

#: The read functions, by path suffix: the routes' own.
READS: dict[str, Callable[[Api, str, ReadOptions, dict[str, Any]], Any]] = {
    "/search": search_hits, "/query": query_page, "": retrieve}


class _HandOn(Exception):
    """The lane does not answer this request: FastAPI does."""


class HotLane:
    def __init__(self, app: ASGIApp, api: Api) -> None:
        self.app, self.api = app, api
        by_template = {(method, getattr(route, "path", None)): route
                       for router in (points.router, query.router, reads.router) for route in router.routes
                       for method in getattr(route, "methods", None) or ()}
        self._route_of = {key: by_template[(key[0], template)] for key, template in _TEMPLATES.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _PATH.match(scope["path"]) if scope["type"] == "http" else None
        kind: str = "" if found is None else found.group(2) or ""
        if found is None or (scope["method"], kind) not in _TEMPLATES:
            await self.app(scope, receive, send)
            return
        params = _query(scope, writes=scope["method"] == "PUT")
        if params is None:
            await self.app(scope, receive, send)
            return
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return
        raw = message.get("body", b"")
        if message.get("more_body", False):  # never the case behind the body limit, which hands it on whole
            await self.app(scope, _replay(raw, receive, more=True), send)
            return
        started = scope.get("state", {}).get("started")
        try:
            if scope["method"] == "PUT":
                answer = await run_in_threadpool(self._upsert, found.group(1), raw, params)
            else:
                answer = await self._read(kind, found.group(1), raw, params)
        except _HandOn:
            await self.app(scope, _replay(raw, receive), send)
            return
        except Exception as exc:  # noqa: BLE001 - a published upsert's failure, answered as FastAPI would
            scope["route"] = self._route_of[(scope["method"], kind)]
            await response_for(exc, started)(scope, receive, send)
            return
        scope["route"] = self._route_of[(scope["method"], kind)]  # the latency metrics' label
        await ok_body(answer, started)(scope, receive, send)

    async def _read(self, kind: str, collection: str, raw: bytes, params: dict[str, Any]) -> Any:
        read = READS[kind]
        opts = ReadOptions(None, params.get("timeout"))
        b = _parsed(raw) if len(raw) <= _INLINE_BYTES else await run_in_threadpool(_parsed, raw)
        if "consistency" in b:
            raise _HandOn  # it waits for the projector: FastAPI's worker thread
        try:
            with never_wait():
                return read(self.api, collection, opts, b)
        except WouldBlock:
            pass
        except Exception:  # noqa: BLE001 - refused: the route answers it, in its own words
            raise _HandOn from None
        try:
            return await run_in_threadpool(read, self.api, collection, opts, b)
        except Exception:  # noqa: BLE001
            raise _HandOn from None

    def _upsert(self, collection: str, raw: bytes, params: dict[str, Any]) -> Any:
        try:
            publish = prepare_upsert(self.api, collection, _parsed(raw), known_points(self.api, collection))
        except Exception:  # noqa: BLE001 - refused before publishing: the route answers it
            raise _HandOn from None
        return self.api.write_result(collection, publish(), params.get("wait"), params.get("timeout"))


def _parsed(raw: bytes) -> dict[str, Any]:
    try:
        return load_body(raw)
    except Exception:  # noqa: BLE001 - not a JSON object: the route's 400
        raise _HandOn from None


def _query(scope: Scope, *, writes: bool) -> dict[str, Any] | None:
    """The query parameters, when every one of them reads here exactly as FastAPI reads it; else ``None``."""
    text = scope.get("query_string", b"").decode("latin-1")
    if not text:
        return {}
    pairs = parse_qsl(text, keep_blank_values=True)
    params: dict[str, Any] = {}
    for key, value in pairs:
        if key in params:
            return None
        if key == "timeout" and _NUMBER.match(value) and 0 < float(value) <= MAX_TIMEOUT_SECONDS:
            params[key] = float(value)
        elif writes and key == "wait" and value in _BOOLEAN:
            params[key] = _BOOLEAN[value]
        elif writes and key == "ordering":
            params[key] = value  # accepted for Qdrant compatibility; Kafka orders writes
        else:
            return None
    return params


def _replay(raw: bytes, receive: Receive, *, more: bool = False) -> Receive:
    """``receive`` with ``raw`` given back first."""
    first: Message | None = {"type": "http.request", "body": raw, "more_body": more}

    async def replay() -> Message:
        nonlocal first
        if first is not None:
            message, first = first, None
            return message
        return await receive()

    return replay
