"""Entry point: global options build the :class:`Settings` once, then a sub-command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vectorizer import __version__
from vectorizer.cli import data, kafka, lifecycle, ops, run, serve, workspace
from vectorizer.cli.context import CliContext, fail
from vectorizer.errors import VectorizerError
from vectorizer.settings import Settings

app = typer.Typer(name="vectorizer", help="Vectorizer: an event-sourced vector database on Kafka.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(kafka.app, name="kafka")
app.command()(lifecycle.up)
app.command()(lifecycle.down)
app.add_typer(data.collections_app, name="collections")
app.add_typer(workspace.app, name="workspace")
app.command()(data.upsert)
app.command()(data.delete)
app.command()(data.search)
app.command()(serve.serve)
app.command()(run.project)
app.command()(run.status)
for _command in (ops.replay, ops.verify, ops.repair, ops.backup, ops.restore, ops.snapshot, ops.bench):
    app.command()(_command)


@app.callback()
def root(
    ctx: typer.Context,
    kafka_bootstrap: Optional[str] = typer.Option(None, help="Kafka bootstrap servers [VECTORIZER_KAFKA_BOOTSTRAP]"),
    topic: Optional[str] = typer.Option(None, help="Events topic [VECTORIZER_TOPIC]"),
    data_dir: Optional[Path] = typer.Option(None, help="Data directory [VECTORIZER_DATA_DIR]"),
    catalog_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the catalog [VECTORIZER_CATALOG_URL]"),
    http: Optional[str] = typer.Option(None, help="HTTP host:port [VECTORIZER_HTTP]"),
    projection: Optional[str] = typer.Option(None, help="Projection name [VECTORIZER_PROJECTION]"),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output"),
    version: bool = typer.Option(False, "--version", help="Print the version and exit"),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)
    try:
        settings = Settings.load({"kafka_bootstrap": kafka_bootstrap, "topic": topic, "data_dir": data_dir,
                                  "catalog_url": catalog_url, "http": http, "projection": projection})
    except VectorizerError as exc:
        raise fail(str(exc), 2) from None
    ctx.obj = CliContext(settings=settings, json_output=json_output)


def main() -> None:
    try:
        app()
    except VectorizerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
