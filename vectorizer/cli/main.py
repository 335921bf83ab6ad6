"""Entry point: global options build the :class:`Settings` once, then a sub-command runs.

Failures that are expected (a :class:`VectorizerError`, or a Kafka client error such as an
unreachable broker) end every command the same way, here: one ``error:`` line on stderr and
exit code 1, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError
from typer.core import TyperGroup

from infra.errors import VectorizerError
from infra.settings import Settings
from vectorizer import __version__
from vectorizer.cli import audit, data, dlq, kafka, keys, lifecycle, mcp, ops, run, serve, workspace
from vectorizer.cli.context import CliContext, fail


class _Root(TyperGroup):
    """The ``vectorizer`` group: runs the callback and the sub-command, mapping expected failures to one line."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except KafkaError as exc:
            raise fail(kafka_failure(exc, ctx.obj.settings.kafka_bootstrap if isinstance(ctx.obj, CliContext)
                                     else "the configured bootstrap")) from None
        except VectorizerError as exc:
            raise fail(str(exc)) from None


def kafka_failure(exc: KafkaError, bootstrap: str) -> str:
    """The one-line message for a Kafka client error."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError | NodeNotReadyError):
        return (f"cannot reach Kafka at {bootstrap} ({detail}); is the broker running? "
                f"(`vectorizer kafka start`, or point --kafka-bootstrap / VECTORIZER_KAFKA_BOOTSTRAP at one)")
    return f"Kafka at {bootstrap}: {detail}"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit(0)


app = typer.Typer(name="vectorizer", help="Vectorizer: an event-sourced vector database on Kafka.", cls=_Root,
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(kafka.app, name="kafka")
app.command()(lifecycle.up)
app.command()(lifecycle.down)
app.add_typer(data.collections_app, name="collections")
app.add_typer(workspace.app, name="workspace")
app.add_typer(dlq.app, name="dlq")
app.command()(audit.audit)
app.add_typer(keys.app, name="keys")
app.command()(keys.shred)
app.command()(data.upsert)
app.command()(data.delete)
app.command()(data.search)
app.command()(serve.serve)
app.command()(mcp.mcp)
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
    grpc: Optional[str] = typer.Option(None, help="gRPC host:port, or off [VECTORIZER_GRPC]"),
    projection: Optional[str] = typer.Option(None, help="Projection name [VECTORIZER_PROJECTION]"),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output"),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit"),
) -> None:
    try:
        settings = Settings.load({"kafka_bootstrap": kafka_bootstrap, "topic": topic, "data_dir": data_dir,
                                  "catalog_url": catalog_url, "http": http, "grpc": grpc,
                                  "projection": projection})
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
