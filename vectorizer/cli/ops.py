"""Operations: replay, verify, repair, backup, restore, snapshot."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Optional

import typer

from consumers import backup as backups
from consumers import integrity, sealedfiles, snapshots
from consumers.replay import STALL_SECONDS, log_ends
from infra.errors import VectorizerError
from infra.process import setup_logging
from infra.settings import Settings
from vectorizer.cli.context import CliContext, cli_context, fail, open_catalog, require_catalog
from vectorizer.cli.progress import progress
from vectorizer.datadir import hold

#: A replay that applies nothing for this long gives up (a sub-batch takes seconds; the projector
#: retries an unavailable catalog meanwhile, so this is longer than a replay's read stall).
_REPLAY_STALL_SECONDS = 4 * STALL_SECONDS


def replay(ctx: typer.Context,
           data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where to rebuild (default: the data dir)"),
           from_beginning: bool = typer.Option(False, "--from-beginning",
                                               help="Discard the target's catalog and snapshots first")) -> None:
    """Rebuild the projections from the topic into a data directory, then snapshot and stop.

    Runs beside a live server without disturbing it when given its own --data-dir (and,
    with a shared Postgres, its own --projection and catalog schema); refuses a data
    directory a running process holds.
    """
    setup_logging()
    c = cli_context(ctx)
    settings = c.settings if data_dir is None else c.settings.replace(data_dir=data_dir.resolve())
    with hold(settings.data_dir, "vectorizer replay"):
        _replay(c, settings, from_beginning)


def _replay(c: CliContext, settings: Settings, from_beginning: bool) -> None:
    from consumers.projector import Projector

    if from_beginning:
        if settings.catalog_url:
            raise fail("--from-beginning discards a SQLite catalog in the data dir; with --catalog-url, "
                       "point it at an empty database or schema instead")
        for path in (settings.data_dir / "catalog.db", settings.snapshot_dir):
            if path.is_dir():
                shutil.rmtree(path)
            for extra in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                if extra.is_file():
                    extra.unlink()
    projector = Projector(settings)
    projector.recover()
    ends = log_ends(settings)
    start = {p: min(projector.offsets.applied.get(p, -1), projector.offsets.catalog.get(p, -1)) for p in ends}
    total = sum(max(0, ends[p] - 1 - start.get(p, -1)) for p in ends)
    stop = threading.Event()
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    seen = {"events": 0, "vectors": 0}
    moved = time.monotonic()
    with progress(f"replay {settings.topic}", total, count="events") as advance:
        while not projector.ready.wait(0.25):
            if not thread.is_alive():
                raise fail("the projector stopped during replay (see the log above)")
            events = projector.stats.events_applied + projector.stats.dead_letters
            if projector.log_problem is not None:  # the log changed beneath the replay: say so now
                stop.set()
                thread.join(STALL_SECONDS)
                raise fail(projector.log_problem)
            if events != seen["events"]:
                moved = time.monotonic()
            elif time.monotonic() - moved > _REPLAY_STALL_SECONDS:
                stop.set()
                thread.join(STALL_SECONDS)
                raise fail(f"replay applied nothing for {_REPLAY_STALL_SECONDS:.0f}s while waiting to reach the "
                           f"log end {ends} (applied: {projector.positions()}); is the broker at "
                           f"{settings.kafka_bootstrap} answering?")
            advance(events - seen["events"], projector.stats.vectors_applied - seen["vectors"])
            seen.update(events=events, vectors=projector.stats.vectors_applied)
        events = projector.stats.events_applied + projector.stats.dead_letters
        advance(events - seen["events"], projector.stats.vectors_applied - seen["vectors"])
    stop.set()
    thread.join()
    summary = {"data_dir": str(settings.data_dir), "offsets": projector.positions(),
               "events": projector.stats.events_applied, "vectors": projector.stats.vectors_applied,
               "dead_letters": projector.stats.dead_letters,
               "collections": {n: len(col) for n, col in projector.state.collections.items()},
               "seconds": round(projector.stats.recovery_seconds or 0.0, 2)}
    c.emit(summary, f"replayed {summary['events']} events ({summary['vectors']} vectors, "
                    f"{summary['dead_letters']} dead letters) into {settings.data_dir} in {summary['seconds']}s; "
                    f"collections: {summary['collections']}")


def verify(ctx: typer.Context, name: Optional[str] = typer.Argument(None),
           against: Optional[Path] = typer.Option(None, "--against", help="Another data dir to compare with")) -> None:
    """Integrity report: snapshot files, catalog and index against the log, sampled recall."""
    c = cli_context(ctx)
    require_catalog(c.settings)  # before replaying anything
    if against is not None:
        require_catalog(c.settings.replace(data_dir=against.resolve(), catalog_url=""))
    report = integrity.verify(c.settings, name, against)  # a deadline passed: the root prints it in one line
    human = "\n".join([f"verified {len(report.checked.get('collections', []))} collections, "
                       f"{report.checked.get('points', 0)} points at offsets {report.offsets}"] +
                      [f"  PROBLEM {p}" for p in report.problems] + ["OK" if report.ok else
                                                                     f"{len(report.problems)} problem(s)"])
    c.emit(report.as_dict(), human)
    if not report.ok:
        raise typer.Exit(1)


def repair(ctx: typer.Context, name: Optional[str] = typer.Argument(None)) -> None:
    """Rebuild from the log what verify finds broken, then verify again."""
    c = cli_context(ctx)
    require_catalog(c.settings)
    report = integrity.repair(c.settings, name)
    c.emit(report.as_dict(), "repaired; verify is clean" if report.ok else
           "\n".join(["still broken after repair:"] + [f"  {p}" for p in report.problems]))
    if not report.ok:
        raise typer.Exit(1)


def backup(ctx: typer.Context, out_dir: Path) -> None:
    """Write a consistent backup (snapshot + catalog + manifest with offsets and checksums)."""
    c = cli_context(ctx)
    require_catalog(c.settings)
    try:
        manifest = backups.backup(c.settings, out_dir)
    except VectorizerError as exc:
        raise fail(str(exc)) from None
    c.emit(manifest, f"backup of {manifest['topic']} at offsets {manifest['offsets']} written to {out_dir} "
                     f"({len(manifest['files'])} files)")


def restore(ctx: typer.Context, in_dir: Path) -> None:
    """Install a verified backup; a server started afterwards catches up by replay.

    Refuses a data directory in use (a running serve, project, up or replay holds its lock):
    rewinding the catalog under a running projector would corrupt what it serves.
    """
    c = cli_context(ctx)
    try:
        backups.check_backup(in_dir)  # a damaged backup writes nothing, not even the data directory
        with hold(c.settings.data_dir, "vectorizer restore"):
            manifest = backups.restore(c.settings, in_dir)
    except VectorizerError as exc:
        raise fail(str(exc)) from None
    note = f" ({manifest['note']})" if manifest.get("note") else ""
    c.emit(manifest, f"restored {in_dir} (offsets {manifest['offsets']}) into {c.settings.data_dir}; "
                     f"start the server to catch up from the log{note}")


def snapshot(ctx: typer.Context) -> None:
    """Write a snapshot now, of the state a restart would serve at the catalog position."""
    c = cli_context(ctx)
    s = c.settings
    catalog = open_catalog(s)
    position = catalog.positions()
    catalog.close()
    state, _ = integrity.served_state(s, position)
    with sealedfiles.opened_keys(s) as keys:
        path = snapshots.write_snapshot(state, position, s.snapshot_dir, s.topic, s.snapshots_keep, keys=keys)
    c.emit({"snapshot": path.name, "offsets": position}, f"snapshot {path.name} covers {position}")


def bench(sizes: str = typer.Option("10000,100000,1000000", help="Comma-separated collection sizes"),
          dim: int = typer.Option(128, help="Vector dimension")) -> None:
    """Run benchmarks/ (publish, ingest vs hnswlib, memory, recovery, replay, query) and write docs/benchmarks.md."""
    import sys

    checkout = Path(__file__).resolve().parents[2]  # an editable install runs from its source checkout
    if (checkout / "benchmarks" / "ingest.py").exists() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        from benchmarks.ingest import main as run_benchmarks
    except ImportError as exc:
        raise fail(f"benchmarks/ is not importable ({exc}): run from a source checkout (make bench)") from None
    run_benchmarks([int(x) for x in sizes.split(",") if x], dim)
