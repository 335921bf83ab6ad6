"""The MCP server through the official SDK's client, over stdio (``vectorizer mcp``) and over
streamable HTTP (``/mcp``), against a real server on the real broker."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from producers import VectorProducer
from tests.api.conftest import Running, end_offset, held_projector, unique
from tests.helpers import wait_until
from vectorizer.mcp.tools import InProcessBackend, build

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"list_collections", "describe_collection", "create_collection", "delete_collection", "upsert_vectors",
         "upsert_texts", "search_vectors", "search_text", "get_points", "delete_points", "set_payload", "status",
         "verify", "snapshot", "workspace_sync"}
KEY, READ_ONLY_KEY = "mcp-full-key-0123456789", "mcp-read-only-key-0123456789"


def _http(server: Running, key: str | None = None) -> Callable[[AsyncExitStack], Client]:
    def connect(stack: AsyncExitStack) -> Client:
        http = httpx2.AsyncClient(headers={"api-key": key} if key else {}, timeout=60)
        stack.push_async_callback(http.aclose)  # the transport leaves a client it was given open
        return Client(streamable_http_client(f"{server.url}/mcp", http_client=http))

    return connect


def _stdio(server: Running) -> Callable[[AsyncExitStack], Client]:
    return lambda _stack: Client(StdioServerParameters(
        command=sys.executable, args=["-m", "vectorizer", "mcp", "--url", server.url], cwd=str(ROOT)))


def _run(connect: Callable[[AsyncExitStack], Client], session: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        with anyio.fail_after(120):
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(connect(stack))
                await session(client)

    anyio.run(main)


async def _ok(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, _text(result))
    return result.structured_content


async def _refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, result.structured_content)
    return _text(result).removeprefix(f"Error executing tool {tool}: ")  # the SDK's prefix


def _text(result: CallToolResult) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)


async def _flow(client: Client) -> None:
    """What an agent does first: list the tools, create, upsert, search (vectors and texts)."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    assert tools["upsert_vectors"].input_schema["required"] == ["collection", "points"]
    search = tools["search_vectors"]
    assert search.output_schema is not None and search.annotations is not None and search.annotations.read_only_hint
    vectors, texts = unique("mcpv"), unique("mcpt")
    created = await _ok(client, "create_collection", collection=vectors, size=3, distance="Dot")
    assert created["verdict"] == "applied" and ":" in created["write_token"]
    upserted = await _ok(client, "upsert_vectors", collection=vectors, points=[
        {"id": 1, "vector": [1, 0, 0], "payload": {"city": "Paris"}},
        {"id": 2, "vector": [0.9, 0.1, 0], "payload": {"city": "Rome"}},
        {"id": 3, "vector": [0, 0, 1], "payload": {"city": "Paris"}}])
    assert upserted["verdict"] == "applied"
    hits = await _ok(client, "search_vectors", collection=vectors, vector=[1, 0, 0], limit=2)
    assert [h["id"] for h in hits["points"]] == [1, 2]
    hits = await _ok(client, "search_vectors", collection=vectors, vector=[0, 1, 0], limit=5,
                     filter={"must": [{"key": "city", "match": {"value": "Rome"}}]})
    assert [h["id"] for h in hits["points"]] == [2]
    await _ok(client, "create_collection", collection=texts, size=512,
              embedder={"name": "hashing", "dimension": 512})
    await _ok(client, "upsert_texts", collection=texts, points=[
        {"id": 1, "text": "recovery loads the newest snapshot and replays the log"},
        {"id": 2, "text": "payload indexes make selective filters fast", "payload": {"topic": "filters"}}])
    hits = await _ok(client, "search_text", collection=texts, text="which snapshot does recovery load", limit=1)
    assert hits["points"][0]["id"] == 1 and "replays the log" in hits["points"][0]["payload"]["text"]
    page = await _ok(client, "list_collections", prefix=texts)
    assert page["total"] == 1 and page["collections"][0]["points"] == 2
    assert page["collections"][0]["embedder"]["name"] == "hashing"


def test_over_stdio(server: Running) -> None:
    _run(_stdio(server), _flow)


def test_over_http_with_workspace_refusal_rejection_and_the_other_tools(
        make_server: Callable[..., Running]) -> None:
    server = make_server(workspace_file=ROOT / "vectorize-workspace.yml")
    doomed = unique("mcpdoomed")
    with VectorProducer(server.settings) as producer:
        producer.wait_applied(producer.create_collection(doomed, 2, "ip"), timeout=60)

    async def session(client: Client) -> None:
        await _flow(client)
        # The server's workspace file: this repository's documentation.
        (synced,) = (await _ok(client, "workspace_sync"))["collections"]
        workspace = synced["name"]
        assert workspace == "vectorizer-docs" and synced["created"] and synced["published"] > 0
        hits = await _ok(client, "search_text", collection=workspace, text="how does recovery work", limit=3)
        assert len(hits["points"]) == 3 and all(h["payload"]["path"].endswith(".md") for h in hits["points"])
        refusal = await _refused(client, "upsert_vectors", collection=workspace, points=[{"id": 1, "vector": [1, 0]}])
        assert refusal.startswith("refused (HTTP 403)") and "read-only" in refusal, refusal
        assert (await _refused(client, "delete_collection", collection=workspace)).startswith("refused (HTTP 403)")
        missing = await _refused(client, "describe_collection", collection=unique("nope"))
        assert missing.startswith("refused (HTTP 404)") and "doesn't exist" in missing

        # Valid when checked, rejected when applied: the collection is deleted in between.
        before = end_offset(server.settings)
        with held_projector(server) as gate:
            with VectorProducer(server.settings) as rival:
                rival.delete_collection(doomed)
            async with anyio.create_task_group() as tasks:
                out: dict[str, CallToolResult] = {}

                async def upsert() -> None:
                    out["r"] = await client.call_tool("upsert_vectors", {"collection": doomed,
                                                                         "points": [{"id": 1, "vector": [1, 0]}]})

                tasks.start_soon(upsert)
                await anyio.to_thread.run_sync(lambda: wait_until(
                    lambda: end_offset(server.settings) >= before + 2, 60, message="both writes on the log"))
                gate.set()
        rejected = out["r"]
        assert rejected.is_error and _text(rejected).removeprefix("Error executing tool upsert_vectors: ").startswith(
            "rejected by the projection (HTTP 404, reason rejected, record 0:"), _text(rejected)

        vectors = unique("mcpo")
        await _ok(client, "create_collection", collection=vectors, size=2)
        await _ok(client, "upsert_vectors", collection=vectors, points=[{"id": 1, "vector": [1, 0]},
                                                                        {"id": 2, "vector": [0, 1]}])
        await _ok(client, "set_payload", collection=vectors, ids=[1], payload={"seen": True})
        got = await _ok(client, "get_points", collection=vectors, ids=[1, 2, 9])
        assert [(p["id"], p["payload"]) for p in got["points"]] == [(1, {"seen": True}), (2, {})]
        await _ok(client, "delete_points", collection=vectors, filter={"must": [{"key": "seen", "match":
                                                                                {"value": True}}]})
        assert [p["id"] for p in (await _ok(client, "get_points", collection=vectors, ids=[1, 2]))["points"]] == [2]
        assert "give exactly one" in await _refused(client, "delete_points", collection=vectors)
        info = await _ok(client, "describe_collection", collection=vectors)
        assert info["points_count"] == 1
        status = await _ok(client, "status")
        assert status["ready"] is True and status["lag"] == 0
        snap = await _ok(client, "snapshot")
        assert snap["name"] and (await _ok(client, "status"))["snapshot"]["newest"] == snap["name"]
        report = await _ok(client, "verify", collection=vectors)
        assert report["ok"] is True and report["problems"] == []
        await _ok(client, "delete_collection", collection=vectors)
        assert (await _ok(client, "list_collections", prefix=vectors))["total"] == 0

    _run(_http(server), session)


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789"])
def test_without_the_key_nothing_is_served(make_server: Callable[..., Running], key: str | None) -> None:
    running = make_server(api_key=KEY, read_only_api_key=READ_ONLY_KEY)
    response = httpx2.post(f"{running.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                           headers={"api-key": key} if key else {})
    assert response.status_code == 401 and "key" in response.json()["status"]["error"]


def test_the_read_only_key_reads_and_writes_nothing(make_server: Callable[..., Running]) -> None:
    running = make_server(api_key=KEY, read_only_api_key=READ_ONLY_KEY)
    name = unique("mcpro")
    assert running.http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}},
                            headers={"api-key": KEY}).status_code == 200

    async def session(client: Client) -> None:
        assert (await _ok(client, "list_collections", prefix=name))["total"] == 1
        assert (await _ok(client, "search_vectors", collection=name, vector=[1, 0]))["points"] == []
        refusal = await _refused(client, "upsert_vectors", collection=name, points=[{"id": 1, "vector": [1, 0]}])
        assert refusal.startswith("refused (HTTP 403)") and "reads only" in refusal
        assert (await _refused(client, "delete_collection", collection=name)).startswith("refused (HTTP 403)")

    _run(_http(running, READ_ONLY_KEY), session)
    assert running.http.get(f"/collections/{name}", headers={"api-key": KEY}).status_code == 200


def test_building_the_tools_leaves_the_process_logging_alone() -> None:
    """MCPServer's constructor configures logging when the root logger has no handler; ours undoes it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []  # as in a process that has not set up its logging (pytest's own handlers aside)
    root.setLevel(logging.WARNING)
    try:
        build(InProcessBackend(lambda scope, receive, send: None))  # type: ignore[arg-type, return-value]
        assert root.handlers == [] and root.level == logging.WARNING
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
