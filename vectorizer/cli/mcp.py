"""``vectorizer mcp``: the MCP tools over stdio, for a desktop agent that starts this command.

It serves no data itself: the tools call a running server's REST API (``--url``, by default the
settings' ``--http`` address) with ``--api-key`` (by default the settings' full key), so the
server's rules hold exactly as over HTTP. stdout carries the protocol; logs go to stderr.
"""

from __future__ import annotations

import logging
from typing import Optional

import typer

from vectorizer.cli.context import cli_context


def mcp(ctx: typer.Context,
        url: Optional[str] = typer.Option(None, "--url", envvar="VECTORIZER_URL",
                                          help="The server's URL (default: http://<the --http address>)"),
        api_key: Optional[str] = typer.Option(None, "--api-key", help="The key to call it with (default: "
                                              "VECTORIZER_API_KEY, else VECTORIZER_READ_ONLY_API_KEY)")) -> None:
    """Serve the MCP tools over stdio (list/create/delete collections, upsert, search, status, verify, ...)."""
    import anyio

    from infra.process import setup_logging
    from vectorizer.mcp.tools import RemoteBackend, build

    setup_logging(logging.WARNING)  # stderr: stdout is the protocol's
    settings = cli_context(ctx).settings
    key = api_key or settings.api_key or settings.read_only_api_key
    server = build(RemoteBackend(url or f"http://{settings.http}", key))
    anyio.run(server.run_stdio_async)
