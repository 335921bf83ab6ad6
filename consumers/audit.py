"""The audit trail: who wrote what, and when, read from the events topic itself.

The log is the truth, so the trail is not a projection: :class:`Trail` reads the topic
(``read_committed``) from a given offset, or from the first record at or after a time (Kafka's
time index), up to the end offsets seen when it opened, and yields one :class:`Write` per event
that matches: each with its envelope (``created_at``, producer id), the attribution headers
(``schemas.attribution``: caller and request id; ``None`` on records written before them) and its
place on the log. Records are keyed by collection, so a trail of one collection reads only that
collection's partition and decodes only that collection's records; it still reads the whole
partition (every collection sharing it) from where it starts: there is no index by point.

Transaction end records are framing, not writes, and are skipped; so are records that do not
decode (counted in :attr:`Trail.undecodable`) and sealed records whose data key was shredded
(erased: :attr:`Trail.shredded`). Sealed records are opened with the topic's keyring
(``infra.keyring``; a wrong or missing KEK refuses the scan, as it refuses a replay). A write
listed here was published: the projection may still have refused it (see ``vectorizer dlq``), or
a conditional one may have matched nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from consumers.errors import LogWaitTimeout
from infra.kafka import clients
from infra.kafka.topics import partition_for
from infra.keyring import Keyring
from infra.settings import Settings
from schemas import events as ev
from schemas.attribution import attribution_of
from schemas.codec import decode
from schemas.errors import DecodeError, Shredded
from schemas.framing import is_end
from schemas.ids import PointId

#: How far before ``since`` a time-indexed scan starts: record timestamps and envelope times come from
#: the same producer's clock, a broker appending with its own (LogAppendTime) may be behind it this much.
SINCE_MARGIN_MS = 60_000
#: A scan that reads nothing new for this long gives up (the broker stopped answering).
STALL_SECONDS = 30.0

#: Called with (records scanned, writes found) as the scan goes.
Progress = Callable[[int, int], None]

#: Events that concern every point of their collection (they appear in each point's history).
_WHOLE_COLLECTION = (ev.CollectionCreated, ev.CollectionDeleted)


@dataclass(frozen=True)
class Write:
    """One event on the log, with who wrote it and where it is."""

    partition: int
    offset: int
    event: ev.Event
    caller: str | None
    request_id: str | None

    @property
    def operation(self) -> str:
        return type(self.event).__name__

    @property
    def ids(self) -> tuple[PointId, ...]:
        return getattr(self.event, "ids", ())

    def concerns(self, point: PointId) -> bool:
        return isinstance(self.event, _WHOLE_COLLECTION) or point in self.ids

    def row(self, point: PointId | None = None) -> dict[str, Any]:
        """The write as the history route and ``vectorizer audit --json`` show it; ``point``: what it
        changed of that point (else of the points it names, and how many)."""
        meta = self.event.meta
        out: dict[str, Any] = {"time": rfc3339(meta.created_at), "operation": self.operation,
                               "collection": meta.collection, "caller": self.caller, "request_id": self.request_id,
                               "producer": meta.producer_id, "partition": self.partition, "offset": self.offset}
        if point is None and hasattr(self.event, "ids"):
            out["points"] = len(self.ids)
        out["change"] = change(self.event, point)
        return out


def change(event: ev.Event, point: PointId | None = None) -> dict[str, Any]:
    """What ``event`` changed, in short: which vectors and payload keys were written or removed
    (never vector values or payload values); ``point``: of that point alone."""
    if isinstance(event, ev.VectorsUpserted):
        at = None if point is None else max(i for i, pid in enumerate(event.ids) if pid == point)
        out: dict[str, Any] = {
            "vector": event.vectors.shape[1] > 0,
            "named": [b.name for b in event.named if at is None or at in b.positions],
            "sparse": [b.name for b in event.sparse if at is None or at in b.positions]}
        if at is not None:
            payload = event.payloads[at] if event.payloads else None
            out["payload_keys"] = None if payload is None else sorted(payload)
        if event.update_mode != "upsert":
            out["update_mode"] = event.update_mode
        if event.update_filter is not None:
            out["conditional"] = True
        return out
    if isinstance(event, ev.PayloadSet):
        return {"payload_keys": sorted(event.payload), **({"key": event.key} if event.key is not None else {})}
    if isinstance(event, ev.PayloadOverwritten):
        return {"payload_keys": sorted(event.payload)}
    if isinstance(event, ev.PayloadKeysDeleted):
        return {"deleted_keys": list(event.keys)}
    if isinstance(event, ev.PointVectorsUpdated):
        return {"vectors": [b.name for b in event.named] + [b.name for b in event.sparse],
                **({"conditional": True} if event.update_filter is not None else {})}
    if isinstance(event, ev.PointVectorsDeleted):
        return {"vectors": list(event.names)}
    if isinstance(event, ev.CollectionCreated):
        return {"dimension": event.dimension, "metric": event.metric}
    if isinstance(event, ev.CollectionUpdated):
        return {"diff": event.diff}
    if isinstance(event, ev.PayloadIndexCreated | ev.PayloadIndexDropped):
        return {"field_name": event.field_name}
    if isinstance(event, ev.AliasesChanged):
        return {"actions": [{"kind": a.kind, "alias": a.alias, "collection": a.collection, "new_alias": a.new_alias}
                            for a in event.actions]}
    return {}  # VectorsDeleted, PayloadCleared, CollectionDeleted: the operation says it all


def rfc3339(millis: int) -> str:
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Trail:
    """The writes on the log that match, in log order (per partition). Open it (a context manager),
    then iterate; :attr:`position` says where to resume after stopping early.

    ``collection``: its partition and records only; ``point``: the events naming that point, and its
    collection's creations and deletions; ``since``: created at or after (epoch milliseconds);
    ``caller``: written by that caller; ``start``: the offset to start at (of the collection's
    partition); ``deadline`` (``time.monotonic()``): stop there, :attr:`complete` then false.
    """

    settings: Settings
    collection: str | None = None
    point: PointId | None = None
    since: int | None = None
    caller: str | None = None
    start: int | None = None
    deadline: float | None = None
    progress: Progress | None = None
    #: The next offset to read, per partition; where a later scan resumes.
    position: dict[int, int] = field(default_factory=dict)
    #: The end offsets the scan reads up to (the log's end when it opened).
    ends: dict[int, int] = field(default_factory=dict)
    complete: bool = False
    undecodable: int = 0
    shredded: int = 0
    _consumer: KafkaConsumer | None = None
    _keys: Keyring | None = None

    def __enter__(self) -> Trail:
        self._keys = Keyring.open(self.settings)  # None when nothing on the topic is encrypted
        consumer = clients.consumer(self.settings, "audit", request_timeout_ms=15_000,
                                    max_partition_fetch_bytes=self.settings.max_message_bytes * 2)
        self._consumer = consumer
        try:
            parts = sorted(consumer.partitions_for_topic(self.settings.topic) or ())
            if self.collection is not None and parts:
                parts = [parts[partition_for(self.collection, len(parts))]]
            tps = [TopicPartition(self.settings.topic, p) for p in parts]
            if not tps:
                return self
            consumer.assign(tps)
            self.ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
            firsts = consumer.beginning_offsets(tps)
            at: dict[TopicPartition, int] = {tp: firsts[tp] for tp in tps}
            if self.since is not None:
                found = consumer.offsets_for_times({tp: max(0, self.since - SINCE_MARGIN_MS) for tp in tps})
                at = {tp: self.ends[tp.partition] if found.get(tp) is None else max(firsts[tp], found[tp].offset)
                      for tp in tps}
            if self.start is not None:
                at = {tp: max(at[tp], self.start) for tp in tps}
            for tp in tps:
                consumer.seek(tp, at[tp])
            self.position = {tp.partition: at[tp] for tp in tps}
        except BaseException:
            self.close()
            raise
        return self

    @property
    def total(self) -> int:
        """Records left to scan from the start position (transaction markers included)."""
        return sum(max(0, self.ends[p] - self.position.get(p, 0)) for p in self.ends)

    def __iter__(self) -> Iterator[Write]:
        consumer = self._consumer
        assert consumer is not None, "open the trail first (with Trail(...) as trail)"
        pending = {p for p in self.ends if self.position.get(p, 0) < self.ends[p]}
        key = None if self.collection is None else self.collection.encode()
        moved = time.monotonic()
        while pending:
            if self.deadline is not None and time.monotonic() > self.deadline:
                return
            batch = consumer.poll(timeout_ms=200)
            now = time.monotonic()
            if batch:
                moved = now
            elif now - moved > STALL_SECONDS:
                raise LogWaitTimeout(f"the audit scan of {self.settings.topic} read nothing for "
                                     f"{STALL_SECONDS:.0f}s; the broker stopped delivering")
            for tp, records in batch.items():
                p, found = tp.partition, 0
                for rec in records:
                    if rec.offset >= self.ends[p]:
                        break
                    write = self._match(p, rec, key)
                    self.position[p] = rec.offset + 1
                    if write is not None:
                        found += 1
                        yield write
                if self.progress is not None:
                    self.progress(len(records), found)
            for p in list(pending):  # transaction markers take the last offsets, and are never returned
                self.position[p] = max(self.position[p], consumer.position(TopicPartition(self.settings.topic, p)))
                if self.position[p] >= self.ends[p]:
                    pending.discard(p)
        self.complete = True

    def _match(self, partition: int, rec: Any, key: bytes | None) -> Write | None:
        if (key is not None and rec.key != key) or is_end(rec.headers) or rec.value is None:
            return None
        try:
            event = decode(rec.value, self._keys)
        except Shredded:
            self.shredded += 1
            return None
        except DecodeError:
            self.undecodable += 1
            return None
        if self.collection is not None and event.collection != self.collection:
            return None
        if self.since is not None and event.meta.created_at < self.since:
            return None
        who = attribution_of(rec.headers)
        if self.caller is not None and who.caller != self.caller:
            return None
        write = Write(partition, rec.offset, event, who.caller, who.request_id)
        if self.point is not None and not write.concerns(self.point):
            return None
        return write

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._keys is not None:
            self._keys.close()
            self._keys = None

    def __exit__(self, *exc: object) -> None:
        self.close()
