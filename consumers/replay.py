"""Replaying the log into memory without touching any catalog or the dead-letter topic.

``replay_into`` is the engine behind ``verify`` (what the log says), ``repair`` and
``backup``: it reads the topic with ``read_committed`` from given offsets up to given
offsets (default: the log end seen at the start), applies every event to a
:class:`ProjectionState`, and keeps a :class:`CatalogMirror` — the catalog rows the real
projector would have written, as absolute values — so the log's truth can be compared
with, or written over, a real catalog.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from consumers.errors import LogBehindProjection, LogWaitTimeout
from infra.kafka import clients
from infra.keyring import Keyring
from infra.settings import Settings
from projections.changes import (
    Change,
    ConfigureCollection,
    DeletePoints,
    DropCollection,
    PointRow,
    PutCollection,
    PutPoints,
)
from projections.errors import Rejected
from projections.state import ProjectionState
from schemas.codec import decode
from schemas.errors import AuthenticationFailed, DecodeError, Shredded
from schemas.events import CollectionCreated, CollectionDeleted, Event
from schemas.framing import is_end
from schemas.sealing import is_sealed


@dataclass
class CatalogMirror:
    """The catalog as the log defines it: collections and point rows, by catalog key."""

    collections: dict[str, tuple[CollectionCreated, int]] = field(default_factory=dict)
    points: dict[str, dict[str, PointRow]] = field(default_factory=dict)

    def apply(self, change: Change) -> None:
        if isinstance(change, PutPoints):
            rows = self.points.setdefault(change.collection, {})
            for row in change.rows:
                rows[row.key] = row
        elif isinstance(change, DeletePoints):
            rows = self.points.setdefault(change.collection, {})
            for key in change.keys:
                rows.pop(key, None)
        elif isinstance(change, PutCollection):
            self.collections[change.event.collection] = (change.event, change.offset)
            self.points[change.event.collection] = {}
        elif isinstance(change, ConfigureCollection):
            created, offset = self.collections[change.name]
            self.collections[change.name] = (replace(created, m=change.m, ef_construction=change.ef_construction),
                                             offset)
        elif isinstance(change, DropCollection):
            self.collections.pop(change.name, None)
            self.points.pop(change.name, None)


@dataclass
class ReplayResult:
    state: ProjectionState
    offsets: dict[int, int]
    mirror: CatalogMirror
    events: int = 0
    vectors: int = 0
    rejected: int = 0
    seconds: float = 0.0
    sealed: int = 0  # records that were encrypted (their tags verified, or not: see the next two)
    shredded: int = 0  # sealed records whose data key was shredded: skipped, as deleted
    unauthentic: list[str] = field(default_factory=list)  # "partition:offset: why" of tags that failed


def erased(decoded: Event | DecodeError | None, keys: Keyring | None, rejected: Exception | None = None) -> bool:
    """Whether a record counts as deleted by crypto-shredding, so a reader skips it (no rejection,
    no dead letter): a sealed record whose data key was shredded, or the clear deletion of a
    collection whose creation was shredded (``rejected``: the projection refused it for that)."""
    if isinstance(decoded, Shredded):
        return True
    return (rejected is not None and isinstance(decoded, CollectionDeleted) and keys is not None
            and keys.has_shredded(decoded.collection))


Progress = Callable[[int, int], None]


#: How long a replay may go without reading anything new before it gives up, and how long one
#: request for metadata or offsets may take: a replay of any size keeps moving, so only a log that
#: stopped answering (or records that will never come) waits this long.
STALL_SECONDS = 30.0
REQUEST_TIMEOUT_MS = 15_000


def _consumer(settings: Settings, **config: Any) -> KafkaConsumer:
    return clients.consumer(settings, "replay", request_timeout_ms=REQUEST_TIMEOUT_MS, **config)


def log_ends(settings: Settings) -> dict[int, int]:
    """Next offset to be written per partition (the last stable offset, read_committed); {} when the
    topic does not exist. Kafka's own errors when the broker does not answer in time (the end offsets:
    within :data:`REQUEST_TIMEOUT_MS`, a timeout naming them)."""
    consumer = _consumer(settings)
    try:
        parts = consumer.partitions_for_topic(settings.topic)
        tps = [TopicPartition(settings.topic, p) for p in sorted(parts or ())]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps, REQUEST_TIMEOUT_MS).items()} if tps else {}
    except KafkaTimeoutError as exc:
        raise KafkaTimeoutError(f"waited {REQUEST_TIMEOUT_MS / 1000:.0f}s for the end offsets of "
                                f"{settings.topic}: {exc}") from None
    finally:
        consumer.close()


def ahead_of_log(positions: dict[int, int], ends: dict[int, int]) -> str | None:
    """Why a catalog at ``positions`` cannot have been built from a log ending at ``ends`` (None: it can).

    A tracking row at or past the log's end offset names records the log does not hold: the topic
    was recreated, the broker lost its storage, or this data directory belongs to another cluster.
    """
    bad = sorted(p for p, o in positions.items() if o >= 0 and o >= ends.get(p, 0))
    if not bad:
        return None
    at = ", ".join(f"{p}:{positions[p]}" for p in bad)
    end = ", ".join(f"{p}:{ends[p]}" if p in ends else f"{p}: (no such partition)" for p in bad)
    return (f"the catalog is at {at} but the log ends at {end}: the log changed beneath this projection "
            f"(recreated topic, wiped broker, other cluster); rebuild with `vectorizer replay --from-beginning`")


def has_records(consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int, deadline: float) -> bool:
    """Whether any committed data record lies in ``[start, end)`` of ``tp`` (assigned to ``consumer``,
    ``read_committed``): transaction markers take offsets but are not records. True when the
    deadline passes first (not known to be caught up)."""
    if start >= end:
        return False
    consumer.seek(tp, start)
    while consumer.position(tp) < end:
        if consumer.poll(timeout_ms=200).get(tp) or time.monotonic() > deadline:
            return True
    return False


def replay_into(settings: Settings, state: ProjectionState | None = None, start: dict[int, int] | None = None,
                until: dict[int, int] | None = None, progress: Progress | None = None,
                mirror: CatalogMirror | None = None) -> ReplayResult:
    """Apply records with ``start[p] < offset <= until[p]`` to ``state`` (fresh by default).

    ``start`` holds last-applied offsets (-1 / absent: from the beginning); ``until`` holds
    last offsets to include (default: everything below the log end at call time).

    Never waits without a deadline: an ``until`` at or past the log end raises
    :class:`LogBehindProjection` before reading; a replay that reads nothing new for
    :data:`STALL_SECONDS` raises :class:`LogWaitTimeout` naming the partitions and offsets it
    waited for.
    """
    began = time.monotonic()
    state = state or ProjectionState(settings.segment_bytes)
    mirror = mirror if mirror is not None else CatalogMirror()
    start = dict(start or {})
    if until is None:
        until = {p: end - 1 for p, end in log_ends(settings).items()}
    result = ReplayResult(state, dict(start), mirror)
    pending = {p: last for p, last in until.items() if last > start.get(p, -1)}
    if not pending:
        result.seconds = time.monotonic() - began
        return result
    problem = ahead_of_log(pending, log_ends(settings))  # records not on the log would be awaited forever
    if problem is not None:
        raise LogBehindProjection(problem)
    keys = Keyring.open(settings)
    consumer = _consumer(settings, max_poll_records=settings.poll_max_records, fetch_max_bytes=64 * 1024 * 1024,
                         max_partition_fetch_bytes=settings.max_message_bytes * 2)
    try:
        tps = {p: TopicPartition(settings.topic, p) for p in pending}
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            consumer.seek(tp, start.get(p, -1) + 1)
        moved = time.monotonic()
        while pending:
            batch = consumer.poll(timeout_ms=200)
            if batch:
                moved = time.monotonic()
            elif time.monotonic() - moved > STALL_SECONDS:
                waiting = ", ".join(f"{p}:{consumer.position(tps[p])}..{until[p]}" for p in sorted(pending))
                raise LogWaitTimeout(f"replay of {settings.topic} read nothing for {STALL_SECONDS:.0f}s while "
                                     f"waiting for records {waiting} (partition:next..last); the broker stopped "
                                     f"delivering or the records are not there")
            for tp, records in batch.items():
                p = tp.partition
                for rec in records:
                    if p not in pending or rec.offset > until[p]:
                        break
                    if not is_end(rec.headers):  # a transaction's end record is framing, not an event
                        _apply(result, rec.value, p, rec.offset, keys)
                    result.offsets[p] = rec.offset
                    if rec.offset >= until[p]:
                        pending.pop(p, None)
                if progress is not None:
                    progress(len(records), 0)
            for p in list(pending):  # transaction markers can sit at the last offsets
                if consumer.position(tps[p]) > until[p]:
                    pending.pop(p)
                    result.offsets[p] = until[p]
    finally:
        consumer.close()
        if keys is not None:
            keys.close()
    result.seconds = time.monotonic() - began
    return result


def _apply(result: ReplayResult, value: bytes, partition: int, offset: int, keys: Keyring | None) -> None:
    if value is not None and is_sealed(value):
        result.sealed += 1
    event = None
    try:
        event = decode(value, keys)
        changes = result.state.apply(event, offset)
    except (DecodeError, Rejected) as exc:
        if erased(exc if isinstance(exc, DecodeError) else event, keys, exc if isinstance(exc, Rejected) else None):
            result.shredded += 1
            return
        if isinstance(exc, AuthenticationFailed):
            result.unauthentic.append(f"{partition}:{offset}: {exc}")
        result.rejected += 1
        return
    result.events += 1
    result.vectors += len(getattr(event, "ids", ()))
    for change in changes:
        result.mirror.apply(change)
