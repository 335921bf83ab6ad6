"""Progress for long operations: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Advance(Protocol):
    def __call__(self, events: int, vectors: int = 0) -> None: ...


@contextmanager
def progress(description: str, total: int | None, unit: str = "vectors", count: str = "vectors",
             events_unit: str = "events") -> Iterator[Advance]:
    """Yield ``advance(events, vectors)``; the bar counts ``count`` ("vectors" or "events") toward
    ``total`` (ETA when known) and shows the rate in ``unit``/s. ``unit`` and ``events_unit``
    name the two counts on screen (e.g. "chunks" and "files")."""
    started = time.monotonic()
    done = {"events": 0, "vectors": 0}
    if sys.stderr.isatty():
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:>10.0f} " + unit + "/s"),
                   TextColumn("{task.fields[events]} " + events_unit),
                   TimeRemainingColumn()]
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(description, total=total, rate=0.0, events=0)

            def advance(events: int, vectors: int = 0) -> None:
                done["events"] += events
                done["vectors"] += vectors
                elapsed = max(time.monotonic() - started, 1e-6)
                bar.update(task, advance=events if count == "events" else vectors, rate=done["vectors"] / elapsed,
                           events=done["events"])

            yield advance
        return
    last_print = [started]

    def advance_plain(events: int, vectors: int = 0) -> None:
        done["events"] += events
        done["vectors"] += vectors
        now = time.monotonic()
        if now - last_print[0] >= 2.0:
            last_print[0] = now
            _plain_line(description, done, total, now - started, count, unit, events_unit)

    yield advance_plain
    _plain_line(description, done, total, time.monotonic() - started, count, unit, events_unit)


def _plain_line(description: str, done: dict[str, int], total: int | None, elapsed: float, count: str,
                unit: str = "vectors", events_unit: str = "events") -> None:
    rate = done["vectors"] / max(elapsed, 1e-6)
    counted = done[count]
    eta = ""
    if total and counted:
        eta = f", ETA {max(0.0, (total - counted) * elapsed / counted):.0f}s"
    of = f"/{total}" if total else ""
    names = {"vectors": unit, "events": events_unit}
    print(f"{description}: {counted}{of} {names[count]}, {done['vectors']} {unit}, {done['events']} {events_unit}, "
          f"{rate:.0f} {unit}/s, {elapsed:.1f}s{eta}", file=sys.stderr, flush=True)
