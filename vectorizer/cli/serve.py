"""``vectorizer serve``: a read replica — projector and HTTP API in one process."""

from __future__ import annotations

import typer

from vectorizer.cli.context import cli_context
from vectorizer.datadir import hold


def serve(ctx: typer.Context) -> None:
    """Consume the topic and answer the HTTP API on --http (default 127.0.0.1:15002) until Ctrl-C.

    Holds the data directory's lock while it runs (``restore`` refuses it meanwhile).
    """
    from vectorizer.api.server import run_server

    settings = cli_context(ctx).settings
    with hold(settings.data_dir, "vectorizer serve"):
        run_server(settings)
