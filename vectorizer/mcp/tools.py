"""Vectorizer's MCP tools: a typed layer over the server's own REST API.

Every tool is one or two calls of the REST API with the caller's key, so each rule of the HTTP
API holds over MCP exactly as over HTTP, without being written twice: validation and its errors,
API keys (the read-only key reads), workspace collections refusing writes (403), and the write
answers. Every write tool publishes with ``wait=true`` and reports the projection's verdict: a
write applied answers its write token; one the projection refused after Kafka acknowledged it,
or one refused before publishing, is a tool error (``isError``) saying which, with the HTTP
status and the server's message.

Where the API lives is a :class:`Backend`: a server's URL for ``vectorizer mcp`` over stdio
(:class:`RemoteBackend`), or the server's own ASGI app for ``/mcp`` (:class:`InProcessBackend`,
which forwards the key the MCP client presented).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import quote

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.types import ASGIApp

from vectorizer import __version__
from vectorizer.api.errors import REASON_HEADER, REJECTED_HEADER

#: HTTP headers a caller's credentials travel in (``api-key``, as qdrant-client sends it, or a bearer token).
KEY_HEADERS = ("api-key", "authorization")
_TIMEOUT_SECONDS = 300.0  # a verify or a workspace sync may take minutes

INSTRUCTIONS = ("Vectorizer: an event-sourced vector database (Qdrant-compatible). Collections hold points "
                "(id, vector, payload). Create a collection with an embedder to upsert and search texts. "
                "Filters are Qdrant filters (must / should / must_not with match, range, ...). Every write "
                "reports whether the projection applied it.")

Json = dict[str, Any]
PointIdT = Annotated[int | str, Field(description="An unsigned integer or a UUID (any other string as an extension)")]
FilterT = Annotated[Json | None, Field(description="A Qdrant filter, e.g. {\"must\": [{\"key\": \"city\", "
                                                   "\"match\": {\"value\": \"Paris\"}}]}")]


class Backend(Protocol):
    """Where the REST API is, and the headers that carry the caller's key."""

    client: httpx.AsyncClient

    def headers(self, ctx: Context[Any, Any]) -> dict[str, str]: ...


class RemoteBackend:
    """A running server's REST API at ``url``, with one key (``vectorizer mcp`` over stdio)."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=_TIMEOUT_SECONDS)
        self._headers = {"api-key": api_key} if api_key else {}

    def headers(self, ctx: Context[Any, Any]) -> dict[str, str]:
        return self._headers


class InProcessBackend:
    """The server's own app, called in process (``/mcp``): the MCP request's key is the one checked."""

    def __init__(self, app: ASGIApp) -> None:
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vectorizer",
                                        timeout=_TIMEOUT_SECONDS)

    def headers(self, ctx: Context[Any, Any]) -> dict[str, str]:
        given: Mapping[str, str] = ctx.headers or {}
        return {name: given[name] for name in KEY_HEADERS if name in given}


# Outputs ---------------------------------------------------------------------------
class WriteVerdict(BaseModel):
    """A write the projection applied (refusals and rejections are tool errors)."""

    verdict: Literal["applied"] = "applied"
    write_token: str | None = Field(None, description="partition:offset: pass as `consistency` to read this write")
    operation_id: int | None = None


class VectorParams(BaseModel):
    size: int
    distance: str
    quantization: Json | None = None


class CollectionSummary(BaseModel):
    name: str
    kind: Literal["dynamic", "workspace"]
    points: int
    vectors: dict[str, VectorParams] = Field(description="Dense vectors by name; the unnamed one is \"\"")
    sparse_vectors: list[str]
    payload_indexes: Json
    aliases: list[str]
    embedder: Json | None = Field(None, description="The embedder of text tools, when the collection has one")


class CollectionPage(BaseModel):
    total: int = Field(description="Collections matching the prefix")
    offset: int
    limit: int
    collections: list[CollectionSummary]


class Point(BaseModel):
    id: PointIdT
    vector: list[float]
    payload: Json | None = None


class TextPoint(BaseModel):
    id: PointIdT
    text: str = Field(description="Embedded with the collection's embedder; kept in the payload as 'text'")
    payload: Json | None = None


class Hit(BaseModel):
    id: PointIdT
    score: float
    payload: Json | None = None


class Hits(BaseModel):
    points: list[Hit]


class Record(BaseModel):
    id: PointIdT
    payload: Json | None = None
    vector: Any = None


class Records(BaseModel):
    points: list[Record]


# The tools -------------------------------------------------------------------------
@contextmanager
def _logging_kept() -> Iterator[None]:
    """The root logger's handlers and level as they were: ``MCPServer()`` calls ``logging.basicConfig``
    (a RichHandler, level INFO) whenever the root logger has no handler yet, and the process's logging
    is the application's to set (``infra.process.setup_logging``), not the SDK's."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def build(backend: Backend) -> MCPServer:
    """The MCP server: every tool over ``backend``'s REST API."""
    with _logging_kept():
        server: MCPServer = MCPServer("vectorizer", version=__version__, instructions=INSTRUCTIONS)
    reads, writes = ToolAnnotations(read_only_hint=True), ToolAnnotations(read_only_hint=False)

    async def call(ctx: Context[Any, Any], method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None) -> httpx.Response:
        response = await backend.client.request(method, path, json=json, params=params, headers=backend.headers(ctx))
        if response.status_code >= 400:
            raise ToolError(_refusal(response))
        return response

    async def result(ctx: Context[Any, Any], method: str, path: str, *, json: Any = None,
                     params: dict[str, Any] | None = None) -> Any:
        return (await call(ctx, method, path, json=json, params=params)).json()["result"]

    async def write(ctx: Context[Any, Any], method: str, path: str, body: Any) -> WriteVerdict:
        answer = (await call(ctx, method, path, json=body, params={"wait": "true"})).json()
        got = answer["result"]
        if isinstance(got, dict):
            return WriteVerdict(write_token=got.get("write_token"), operation_id=got.get("operation_id"))
        return WriteVerdict(write_token=answer.get("write_token"))  # collection changes answer a boolean

    @server.tool(annotations=reads)
    async def list_collections(ctx: Context[Any, Any], prefix: str = "", offset: Annotated[int, Field(ge=0)] = 0,
                               limit: Annotated[int, Field(ge=1, le=1000)] = 50) -> CollectionPage:
        """Collections a page at a time (sorted by name): kind, points, vectors, payload indexes, embedder."""
        page = await result(ctx, "GET", "/vectorizer/collections",
                            params={"prefix": prefix, "offset": offset, "limit": limit})
        return CollectionPage.model_validate(page)

    @server.tool(annotations=reads)
    async def describe_collection(ctx: Context[Any, Any], collection: str) -> Json:
        """A collection's Qdrant CollectionInfo: points_count, config (vectors, HNSW, quantization), payload_schema."""
        info: Json = await result(ctx, "GET", f"/collections/{_segment(collection)}")
        return info

    @server.tool(annotations=writes)
    async def create_collection(ctx: Context[Any, Any], collection: str,
                                size: Annotated[int, Field(ge=1, description="The vectors' dimension")],
                                distance: Literal["Cosine", "Euclid", "Dot", "Manhattan"] = "Cosine",
                                embedder: Annotated[Json | None, Field(description=(
                                    "For text tools: e.g. {\"name\": \"hashing\", \"dimension\": SIZE}; "
                                    "its dimension must equal size"))] = None) -> WriteVerdict:
        """Create a collection of one vector per point; with an embedder, upsert_texts and search_text work on it."""
        body: Json = {"vectors": {"size": size, "distance": distance}}
        if embedder is not None:
            body["embedder"] = embedder
        return await write(ctx, "PUT", f"/collections/{_segment(collection)}", body)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    async def delete_collection(ctx: Context[Any, Any], collection: str) -> WriteVerdict:
        """Delete a collection and its points (workspace collections refuse: they follow their files)."""
        return await write(ctx, "DELETE", f"/collections/{_segment(collection)}", None)

    @server.tool(annotations=writes)
    async def upsert_vectors(ctx: Context[Any, Any], collection: str, points: list[Point]) -> WriteVerdict:
        """Insert or replace points given with their vectors."""
        body = {"points": [p.model_dump(exclude_none=True) for p in points]}
        return await write(ctx, "PUT", f"/collections/{_segment(collection)}/points", body)

    @server.tool(annotations=writes)
    async def upsert_texts(ctx: Context[Any, Any], collection: str, points: list[TextPoint]) -> WriteVerdict:
        """Insert or replace points from texts, embedded with the collection's embedder."""
        body = {"points": [p.model_dump(exclude_none=True) for p in points]}
        return await write(ctx, "PUT", f"/collections/{_segment(collection)}/points/text", body)

    @server.tool(annotations=reads)
    async def search_vectors(ctx: Context[Any, Any], collection: str, vector: list[float],
                             limit: Annotated[int, Field(ge=1, le=1000)] = 10, filter: FilterT = None,
                             with_payload: bool = True) -> Hits:
        """The points nearest to a vector, best first, among those the filter selects."""
        body: Json = {"query": vector, "limit": limit, "with_payload": with_payload}
        if filter is not None:
            body["filter"] = filter
        found = await result(ctx, "POST", f"/collections/{_segment(collection)}/points/query", json=body)
        return Hits.model_validate(found)

    @server.tool(annotations=reads)
    async def search_text(ctx: Context[Any, Any], collection: str, text: str,
                          limit: Annotated[int, Field(ge=1, le=1000)] = 10, filter: FilterT = None,
                          mode: Literal["dense", "sparse", "hybrid", "auto"] = "auto") -> Hits:
        """The points nearest to a text, embedded with the collection's embedder ("auto": hybrid when the
        collection also has a sparse embedder, else dense)."""
        body: Json = {"query": text, "limit": limit, "mode": mode}
        if filter is not None:
            body["filter"] = filter
        found = await result(ctx, "POST", f"/collections/{_segment(collection)}/search/text", json=body)
        return Hits.model_validate(found)

    @server.tool(annotations=reads)
    async def get_points(ctx: Context[Any, Any], collection: str, ids: list[PointIdT],
                         with_vector: bool = False) -> Records:
        """The points of these ids (missing ids are left out), with their payloads."""
        found = await result(ctx, "POST", f"/collections/{_segment(collection)}/points",
                             json={"ids": ids, "with_payload": True, "with_vector": with_vector})
        return Records(points=[Record.model_validate(r) for r in found])

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    async def delete_points(ctx: Context[Any, Any], collection: str, ids: list[PointIdT] | None = None,
                            filter: FilterT = None) -> WriteVerdict:
        """Delete points by ids, or every point a filter selects (give exactly one)."""
        if (ids is None) == (filter is None):
            raise ToolError("give exactly one of ids and filter")
        body: Json = {"points": ids} if ids is not None else {"filter": filter}
        return await write(ctx, "POST", f"/collections/{_segment(collection)}/points/delete", body)

    @server.tool(annotations=writes)
    async def set_payload(ctx: Context[Any, Any], collection: str, payload: Json, ids: list[PointIdT] | None = None,
                          filter: FilterT = None) -> WriteVerdict:
        """Merge these payload keys into the points given by ids or selected by a filter."""
        if (ids is None) == (filter is None):
            raise ToolError("give exactly one of ids and filter")
        body: Json = {"payload": payload, **({"points": ids} if ids is not None else {"filter": filter})}
        return await write(ctx, "POST", f"/collections/{_segment(collection)}/points/payload", body)

    @server.tool(annotations=reads)
    async def status(ctx: Context[Any, Any]) -> Json:
        """Readiness, per partition the applied offset, log end and lag, counts, dead letters by reason, the
        newest recovery snapshot and its age, the last verify."""
        found: Json = await result(ctx, "GET", "/vectorizer/status")
        return found

    @server.tool(annotations=reads)
    async def verify(ctx: Context[Any, Any], collection: str | None = None) -> Json:
        """Check snapshots, catalog and index against the log (one collection, or all): ok, and every problem."""
        found: Json = await result(ctx, "POST", "/vectorizer/verify",
                                   params=None if collection is None else {"collection": collection})
        return found

    @server.tool(annotations=writes)
    async def snapshot(ctx: Context[Any, Any]) -> Json:
        """Take a recovery snapshot now: a restart loads it and replays only what came after."""
        found: Json = await result(ctx, "POST", "/vectorizer/snapshots")
        return found

    @server.tool(annotations=writes)
    async def workspace_sync(ctx: Context[Any, Any]) -> Json:
        """Index what changed in the server's workspace file's folders (VECTORIZER_WORKSPACE_FILE) and wait."""
        found: Json = await result(ctx, "POST", "/vectorizer/workspace/sync")
        return found

    return server


def _segment(name: str) -> str:
    """A collection name as one path segment (a name with '/' must not reach another route)."""
    return quote(name, safe="")


def _refusal(response: httpx.Response) -> str:
    """The tool error for an HTTP error answer: refused (nothing published) or rejected by the projection."""
    try:
        message = response.json()["status"]["error"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    record = response.headers.get(REJECTED_HEADER)
    if record is not None:
        return (f"rejected by the projection (HTTP {response.status_code}, reason "
                f"{response.headers.get(REASON_HEADER)}, record {record}): {message}")
    return f"refused (HTTP {response.status_code}): {message}"
