"""``vectorizer serve``: a read replica — projector and HTTP API in one process."""

from __future__ import annotations

import typer

from vectorizer.cli.context import cli_context


def serve(ctx: typer.Context) -> None:
    """Consume the topic and answer the HTTP API on --http (default 127.0.0.1:15002) until Ctrl-C."""
    from projections.api.server import run_server

    run_server(cli_context(ctx).settings)
