"""Long-running roles: ``project`` (projector only) and ``status``."""

from __future__ import annotations

import logging
import threading
import time

import typer
from kafka import TopicPartition

from consumers import logid, snapshots, stall
from consumers.errors import SnapshotCorrupt
from consumers.replay import has_records
from infra import process
from infra.kafka import clients
from infra.kafka.topics import partition_for
from infra.settings import Settings
from vectorizer.cli.context import cli_context, fail, open_catalog
from vectorizer.datadir import hold

log = logging.getLogger("vectorizer")


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    process.on_stop(stop.set)
    return stop


def project(ctx: typer.Context) -> None:
    """Run the projections without HTTP until SIGINT/SIGTERM (then a final snapshot)."""
    from consumers.projector import Projector

    process.setup_logging()
    settings = cli_context(ctx).settings
    with hold(settings.data_dir, "vectorizer project"):
        stop = stop_on_signals()
        projector = Projector(settings)
        projector.recover()
        log.info("projecting %s into %s (catalog %s)", settings.topic, settings.data_dir,
                 process.masked_url(settings.resolved_catalog_url))
        projector.run(stop)


def status(ctx: typer.Context) -> None:
    """Per collection: count, applied offset, log end, lag, snapshot age."""
    c = cli_context(ctx)
    s: Settings = c.settings
    catalog = open_catalog(s)
    positions = catalog.positions()
    stored = catalog.log_identity()
    trouble = logid.diagnose(s, None if stored is None else logid.LogIdentity(*stored), positions)
    if trouble:  # the catalog describes another log than the one the broker has now
        raise fail(f"{'; '.join(trouble)}: {logid.advice()}")
    consumer = clients.consumer(s, "status")
    try:
        parts = sorted(consumer.partitions_for_topic(s.topic) or ())  # None: no such topic (yet)
        tps = [TopicPartition(s.topic, p) for p in parts]
        ends = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()} if tps else {}
        begins = {tp.partition: o for tp, o in consumer.beginning_offsets(tps).items()} if tps else {}
        waiting = {}  # per partition: is any data record (not just a transaction marker) still unapplied?
        for tp in tps:
            consumer.assign([tp])
            waiting[tp.partition] = has_records(consumer, tp, positions.get(tp.partition, -1) + 1,
                                                ends[tp.partition], time.monotonic() + 10)
    finally:
        consumer.close()
    held = stall.read(s, parts)
    age = snapshots.age_seconds(s.snapshot_dir)
    newest = next(iter(snapshots.list_snapshots(s.snapshot_dir)), None)
    covered = {}
    if newest is not None:
        try:
            covered = {int(p): o for p, o in snapshots.read_manifest(newest)["offsets"].items()}
        except SnapshotCorrupt:
            covered = {}
    rows = []
    for coll in catalog.collection_rows():
        p = partition_for(coll["name"], len(parts)) if parts else 0
        applied = positions.get(p, -1)
        end = ends.get(p, 0)
        lag = max(0, end - applied - 1) if waiting.get(p) else 0  # records (markers included) still to apply
        rows.append({"collection": coll["name"], "count": catalog.point_count(coll["name"]), "partition": p,
                     "applied_offset": applied, "log_end": end, "lag": lag,
                     "snapshot_age_s": None if age is None else round(age, 1)})
    replay_from = {p: covered.get(p, -1) + 1 for p in parts}
    # Per partition whose last stable offset is below its high watermark: an open transaction
    # (or a killed producer's, until the broker aborts it) holds every read_committed reader there.
    held_back = {p: h.as_dict() for p, h in sorted(held.items())}
    result = {"topic": s.topic, "projection": s.projection, "collections": rows,
              "restore_needs_from_offset": replay_from, "log_begins_at": begins, "lso_held": held_back}
    lines = [f"{'collection':24} {'count':>9} {'applied':>9} {'log end':>9} {'lag':>6} {'snapshot age':>12}"]
    for r in rows:
        snap = "-" if r["snapshot_age_s"] is None else f"{r['snapshot_age_s']:.0f}s"
        lines.append(f"{r['collection']:24} {r['count']:>9} {r['applied_offset']:>9} {r['log_end']:>9} "
                     f"{r['lag']:>6} {snap:>12}")
    for p, h in sorted(held.items()):
        lines.append(f"partition {p}: readers held at the last stable offset {h.stable} for "
                     f"{h.held_seconds():.0f}s by an open transaction ({h.open_records} records up to the high "
                     f"watermark {h.high_watermark}); a dead producer's is aborted after its transaction timeout")
    lines.append(f"a restore from the newest snapshot replays from offsets {replay_from} "
                 f"(the log begins at {begins}); keep the topic at least back to there")
    c.emit(result, "\n".join(lines))

