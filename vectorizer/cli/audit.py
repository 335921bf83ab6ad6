"""``vectorizer audit``: who wrote what, and when, read from the events topic (no server needed)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Optional

import typer

from consumers.audit import Trail, Write
from schemas.errors import InvalidPointId
from schemas.ids import PointId, storable_point_id
from vectorizer.cli.context import cli_context, fail
from vectorizer.cli.progress import progress

#: A scan of more records than this shows a progress bar (a plain line every 2 s off a terminal).
PROGRESS_ABOVE_RECORDS = 20_000
_AGO = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def audit(ctx: typer.Context,
          collection: Optional[str] = typer.Argument(None, help="Only this collection (reads its partition only)"),
          point: Optional[str] = typer.Option(None, "--point", help="Only the events of this point id (with "
                                                                    "COLLECTION)"),
          since: Optional[str] = typer.Option(None, "--since", help="Only writes at or after TIME: ISO 8601 "
                                                                    "(2025-01-31T12:00:00Z; without a zone, local "
                                                                    "time) or a span ago (90s, 15m, 2h, 7d)"),
          caller: Optional[str] = typer.Option(None, "--caller", help="Only writes by this caller (as listed, e.g. "
                                                                      "api-key, jwt:alice, a producer's caller=)"),
          json_output: bool = typer.Option(False, "--json", help="One JSON object per write")) -> None:
    """One line per write on the events topic: time, partition:offset, operation, collection, caller,
    request id, and what it changed. Reads the topic itself, from its beginning (or from --since, by
    Kafka's time index) to its end as it is now. Records written before the audit trail existed show
    caller '-'. Attribution headers are not signed: see docs/security.md."""
    c = cli_context(ctx)
    as_json = json_output or c.json_output
    if point is not None and collection is None:
        raise fail("--point needs a COLLECTION")
    pid: PointId | None = None
    if point is not None:
        try:  # as in a URL path: decimal digits are an integer id, anything else a string id
            pid = storable_point_id(int(point) if point.isascii() and point.isdigit() else point, field="--point")
        except InvalidPointId as exc:
            raise fail(f"--point {point!r}: {exc}") from None
    since_ms = None if since is None else parse_since(since)
    found = 0
    with Trail(c.settings, collection=collection, point=pid, since=since_ms, caller=caller) as trail:
        if trail.total > PROGRESS_ABOVE_RECORDS:
            with progress(f"audit {c.settings.topic}", trail.total, unit="records", count="vectors",
                          events_unit="writes") as advance:
                trail.progress = lambda scanned, writes: advance(writes, scanned)
                for write in trail:
                    found += 1
                    _show(write, pid, as_json)
        else:
            for write in trail:
                found += 1
                _show(write, pid, as_json)
        undecodable = trail.undecodable
    if undecodable:
        typer.echo(f"note: {undecodable} records did not decode and are not listed (see `vectorizer verify`)",
                   err=True)
    if not found and not as_json:
        typer.echo("no writes match", err=True)


def _show(write: Write, point: PointId | None, as_json: bool) -> None:
    row = write.row(point)
    if as_json:
        typer.echo(json.dumps(row, default=str))
        return
    change = " ".join(_shown(k, v) for k, v in row["change"].items() if v not in (False, None, [], {}))
    points = f" points={row['points']}" if "points" in row else ""
    typer.echo(f"{row['time']}  {row['partition']}:{row['offset']}  {row['operation']}  {row['collection'] or '-'}  "
               f"caller={row['caller'] or '-'}  request={row['request_id'] or '-'}{points}  {change}".rstrip())


def _shown(key: str, value: object) -> str:
    """One item of a change, for people: ``vector`` when true, lists comma-separated (``--json`` has them all)."""
    if value is True:
        return key
    if isinstance(value, list):
        return f"{key}={','.join(json.dumps(v) if isinstance(v, dict) else str(v) for v in value)}"
    return f"{key}={value}"


def parse_since(text: str, now: float | None = None) -> int:
    """``--since``: ISO 8601 (naive: local time) or ``<n>s|m|h|d`` ago, as epoch milliseconds."""
    ago = _AGO.match(text.strip())
    if ago is not None:
        seconds = int(ago.group(1)) * _UNIT_SECONDS[ago.group(2)]
        return int(((time.time() if now is None else now) - seconds) * 1000)
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise fail(f"--since {text!r}: expected an ISO 8601 time (2025-01-31T12:00:00Z) or a span ago "
                   "(90s, 15m, 2h, 7d)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return int(when.timestamp() * 1000)
