"""``vectorizer workspace sync|watch FILE``: the workspace producer app."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from infra import process
from vectorizer.cli.context import CliContext, cli_context, fail, open_catalog, require_catalog
from vectorizer.cli.progress import progress

if TYPE_CHECKING:
    from vectorizer.workspace import CollectionReport, Workspace, WorkspaceProducer

app = typer.Typer(help="Keep workspace collections in step with files (vectorize-workspace.yml).",
                  no_args_is_help=True)

FILE = typer.Argument(Path("vectorize-workspace.yml"), help="The workspace file")
WAIT = typer.Option(60.0, help="Seconds to wait for the projection (the server) to catch up")


def _summary(c: CliContext, reports: list[CollectionReport], verb: str) -> None:
    lines = []
    for r in reports:
        lines.append(f"{r.name}: {r.files} files, {r.published} {verb}, {r.unchanged} unchanged, {r.removed} removed, "
                     f"{r.chunks} chunks published" + (" (collection created)" if r.created else ""))
        lines += [f"  skipped {path}: {reason}" for path, reason in r.skipped]
    c.emit([r.as_dict() for r in reports], "\n".join(lines) or "nothing to do")


def _first_sync(producer: WorkspaceProducer, workspace: Workspace) -> list[CollectionReport]:
    from vectorizer.workspace.files import scan

    total = sum(1 for spec in workspace.collections for _ in scan(spec))
    with progress("indexing files", total, unit="chunks", count="events", events_unit="files") as advance:
        return producer.sync(lambda files, chunks: advance(files, chunks))


@app.command("drop")
def drop(ctx: typer.Context, name: str) -> None:
    """Delete a workspace collection (the API and `collections delete` refuse to: it is read-only)."""
    from producers import VectorProducer
    from schemas.events import WORKSPACE_PRODUCER

    c = cli_context(ctx)
    catalog = open_catalog(c.settings)
    row = next((r for r in catalog.collection_rows() if r["name"] == name), None)
    if row is None or row["kind"] != "workspace":
        raise fail(f"{name!r} is not a workspace collection in the catalog at {catalog.safe_url}")
    with VectorProducer(c.settings, producer_id=f"{WORKSPACE_PRODUCER}:drop") as producer:
        token = producer.delete_collection(name)
    c.emit({"collection": name, "write_token": str(token)}, f"dropped {name} (write token {token})")


@app.command("sync")
def sync(ctx: typer.Context, file: Path = FILE, wait: float = WAIT) -> None:
    """Publish what changed since the last sync, once; wait until the server has applied it."""
    from vectorizer.workspace import WorkspaceProducer, load

    c = cli_context(ctx)
    workspace = load(file)
    require_catalog(c.settings)  # it reads what is indexed from the server's catalog
    with WorkspaceProducer(c.settings, workspace, catch_up_timeout=wait) as producer:
        reports = _first_sync(producer, workspace)
        producer.wait_applied(wait)
    _summary(c, reports, "indexed")


@app.command("watch")
def watch(ctx: typer.Context, file: Path = FILE, wait: float = WAIT,
          debounce: float = typer.Option(0.3, help="Seconds of quiet before publishing a burst of changes")) -> None:
    """Sync, then publish every change the filesystem reports until interrupted (Ctrl-C, SIGTERM)."""
    from vectorizer.workspace import Watcher, WorkspaceProducer, load

    c = cli_context(ctx)
    workspace = load(file)
    require_catalog(c.settings)
    stop = threading.Event()
    process.on_stop(stop.set, (signal.SIGTERM,))  # Ctrl-C: KeyboardInterrupt, handled below
    with WorkspaceProducer(c.settings, workspace, catch_up_timeout=wait) as producer:
        watcher = Watcher(producer, debounce)
        watcher.start()  # watching before the first sync: no change slips in between
        reports = _first_sync(producer, workspace)
        _summary(c, reports, "indexed")
        typer.echo(f"watching {', '.join(sorted({str(s.root) for s in workspace.collections}))}", err=True)
        with contextlib.suppress(KeyboardInterrupt):
            watcher.run(stop, lambda rs: _summary(c, rs, "updated"))
