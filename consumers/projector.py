"""The projector: consumes the events topic and keeps the projections, surviving any crash.

Per polled batch, in this fixed order:

1. decode and apply each record past the in-memory position to the in-memory state
   (records at or below it are already there: replay after a snapshot skips them);
   undecodable or rejected records become dead letters. A transaction's records (framed by
   ``schemas.framing``), and the records after them on their partition, are held until the
   whole transaction is, then applied as one unit: readers see all of it or none of it, and
   steps 2-4 run once for it (``consumers.units``);
2. send the dead letters of records the catalog has not seen, and wait for their acks;
3. commit the catalog changes of records past the catalog's position together with the
   new tracking rows, in one transaction (retried while the database is unavailable);
4. publish the new applied offsets to readers (read-your-writes waits end here, with the
   projection's verdict: applied, or rejected with the reason recorded for that offset);
5. now and then, commit the same offsets to Kafka's consumer group: only a hint for
   tools, the stored tracking rows are the truth.

Snapshots are taken between batches every N events or T seconds and on clean shutdown.
Recovery: load the newest verified snapshot (else start empty), read the catalog's
position, and seek each partition to ``min(snapshot, catalog) + 1``. A snapshot ahead of
the catalog (a lost or restored database) is ignored so that both rebuild from the log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, LogTruncationError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata

from consumers import logid, snapshots, stall
from consumers.dlq import DeadLetter, DeadLetters, SentLetters
from consumers.errors import LogChanged, ProjectorError
from consumers.logid import LogIdentity, current_identity
from consumers.replay import erased
from consumers.timings import APPLY_BUCKETS, SNAPSHOT_BUCKETS, Durations
from consumers.units import Units
from infra.kafka import clients
from infra.kafka.topics import ensure_topics
from infra.keyring import Keyring
from infra.memory import release_free_memory
from infra.settings import Settings
from producers.errors import VerdictUnknown
from projections.catalog.store import Catalog
from projections.changes import Change, DropCollection, Rejection
from projections.collection import Collection
from projections.errors import CatalogUnavailable, ConsistencyTimeout, Rejected
from projections.state import ProjectionState
from schemas import events as ev
from schemas.codec import decode
from schemas.errors import DecodeError
from schemas.framing import frame_of, is_end

log = logging.getLogger(__name__)
_FETCH_BYTES = 16 << 20  # per fetch: the consumer's buffered records stay within tens of MB
_BATCH_BYTES = 8 << 20   # per catalog transaction (about 15,000 vectors of 128-d)
_TRIM_AFTER_EVENTS = 50  # events applied before an idle moment returns freed memory (infra.memory)
_LOG_CHECK_SECONDS = 5.0  # how often a running projector checks the log is still the one it applied
_PART_WAIT_SECONDS = 10.0  # a partition finding no whole transaction on a log read to its end: give up
_SPLIT_RECORDS = 500  # records per catalog transaction when held records are applied one by one
_VERDICTS_KEPT = 100_000  # rejections remembered in memory; older ones are read from the catalog


@dataclass
class ProjectorStats:
    events_applied: int = 0
    vectors_applied: int = 0
    dead_letters: int = 0
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    snapshots_taken: int = 0
    snapshot_failures: int = 0
    last_snapshot_seconds: float | None = None  # how long the last snapshot took, until durable
    last_snapshot_stall_seconds: float | None = None  # of which ingest waited (writing what changed)
    last_snapshot_written_bytes: int | None = None  # what it wrote (files shared with an earlier one excluded)
    last_snapshot_error: str | None = None
    catalog_failures: int = 0
    kafka_failures: int = 0
    log_end: dict[int, int] = field(default_factory=dict)  # read_committed: the last stable offset (LSO)
    # Partitions whose LSO is below the high watermark: an open transaction (or a producer killed
    # inside one, until the broker aborts it) holds readers back. Refreshed with ``log_end``.
    lso_held: dict[int, stall.HeldLso] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)  # next offset to read, per partition
    loaded_snapshot: str | None = None
    recovery_seconds: float | None = None
    units_applied: int = 0  # transactions (with what they held back) applied as one step for readers
    units_split: int = 0    # times held transaction records were applied one by one (bounds passed)
    # Per partition: the Kafka timestamp (seconds) of the last record applied (vectorizer_lag_seconds).
    applied_timestamps: dict[int, float] = field(default_factory=dict)
    # Once ready: per record, its Kafka timestamp to the moment readers see it.
    apply_latency: Durations = field(default_factory=lambda: Durations(APPLY_BUCKETS))
    snapshot_durations: Durations = field(default_factory=lambda: Durations(SNAPSHOT_BUCKETS))


@dataclass
class Offsets:
    """Where the projector is, per partition; every value is a Kafka offset of the events topic."""

    applied: dict[int, int] = field(default_factory=dict)  # last applied in memory, published to readers
    catalog: dict[int, int] = field(default_factory=dict)  # last the catalog committed (its tracking rows)
    target: dict[int, int] = field(default_factory=dict)   # the log end when recovery began: ready past it
    verdicts_from: dict[int, int] = field(default_factory=dict)  # rejections from here on are in memory


@dataclass
class _Applied:
    """One partition's records applied in memory, awaiting the catalog and publication."""

    last: int  # the last offset applied (unchanged: nothing new)
    count: int = 0
    vectors: float = 0.0  # inserted into graphs, in 128-dimension equivalents (see Settings.snapshot_every_vectors)
    bytes: int = 0  # of record values
    timestamps: list[int] = field(default_factory=list)  # Kafka's, in ms, of the records applied
    changes: list[Change] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    refused: list[Rejection] = field(default_factory=list)


class Projector:
    """Owns the projection state; one thread runs :meth:`run`, any thread may read."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self._catalog = catalog  # opened on first use (recovery): a catalog down at start is retried
        self.state = ProjectionState(settings.segment_bytes)
        self.stats = ProjectorStats()
        self.offsets = Offsets()
        self.ready = threading.Event()
        self._cond = threading.Condition()
        self._consumer: KafkaConsumer | None = None
        self._dlq = DeadLetters(settings)
        self._events_since_snapshot = 0
        self._vectors_since_snapshot = 0.0  # inserted, 128-d equivalents: what a restart would re-insert
        self._bytes_since_snapshot = 0  # of records: what it would read and decode
        self._events_since_trim = 0
        self._last_snapshot = time.monotonic()
        self._snapshot_backoff, self._snapshot_retry_at = 0.0, 0.0  # after a failure: 1 s, 2 s, ... 60 s
        self._snapshot_retry = False  # the last snapshot failed: due again after the backoff
        self._snapshotting: threading.Thread | None = None  # completing a snapshot in the background
        self._durable: snapshots.Pending | None = None  # completed, its float32 rows not adopted yet
        self._last_kafka_commit = 0.0
        self._last_end_check = 0.0
        self._started = time.monotonic()
        self._snapshot_requests: list[tuple[threading.Event, list[str | None]]] = []
        self._requests_lock = threading.Lock()
        # Verdicts: every rejection at or past ``offsets.verdicts_from[p]`` is in ``_rejected[p]``;
        # below it the catalog answers (it holds them all, written with the tracking rows).
        self._rejected: dict[int, dict[int, Rejection]] = {}
        self._dlq_done = SentLetters()  # what the DLQ already held at start
        self._stopped = False
        self._stalled = False  # while the catalog refuses commits: unbounded waits answer "not yet"
        self.identity: LogIdentity | None = None  # the log being applied (set by recover)
        self.log_problem: str | None = None  # why this projection does not serve: its log changed
        self._last_log_check = 0.0
        self._sticky_halt = False
        self._admin: Any = None  # the log identity check's admin client (kafka.KafkaAdminClient)
        # Records of transactions not yet whole (consumers.units); bounded in bytes and in time.
        self._units = Units()
        self._paused: set[int] = set()  # partitions not fetched while they wait for another's part
        self._ends_asked = 0.0
        self._unit_limit = 2 * settings.max_transaction_bytes
        self._keys: Keyring | None = None  # the data keys of sealed events (None: nothing is encrypted)
        self._keys_opened = False

    @property
    def keys(self) -> Keyring | None:
        """The data keys this projector opened at recovery (None: nothing is encrypted)."""
        return self._keys

    # Recovery ----------------------------------------------------------------------
    def recover(self) -> None:
        """Check the log is the one the projection was built from, load state and position,
        connect to Kafka and seek. Call before :meth:`run`; may be called again after it raised.

        Raises :class:`LogChanged` (with :attr:`log_problem` set) when the log is not that log
        any more: nothing is loaded or served then.
        """
        self._started = time.monotonic()
        self.offsets.catalog = self.catalog.positions()
        ensure_topics(self.settings)
        if not self._keys_opened:  # a wrong or missing KEK stops here, before anything is applied
            self._keys, self._keys_opened = Keyring.open(self.settings), True
        self.catalog.keys = self._keys  # payloads are sealed as the snapshot files are (projections.catalog.sealed)
        consumer = clients.consumer(
            self.settings, "projector", group_id=f"vectorizer-{self.settings.projection}",
            auto_offset_reset="none",  # a position beyond the log is a changed log, never a silent reset
            max_poll_records=self.settings.poll_max_records, fetch_max_bytes=_FETCH_BYTES,
            max_partition_fetch_bytes=self.settings.max_message_bytes * 2)
        partitions = self._partitions(consumer)
        try:
            self.identity = self._check_identity(consumer, partitions)
            loaded = snapshots.load_newest(self.settings.snapshot_dir, self.settings.segment_bytes, self._keys)
            if loaded is not None and any(o > self.offsets.catalog.get(p, -1) for p, o in loaded.offsets.items()):
                log.warning("snapshot %s is ahead of the catalog (%s > %s); rebuilding both from the log",
                            loaded.snapshot_id, loaded.offsets, self.offsets.catalog)
                loaded = None
            if loaded is not None and loaded.log is not None and (loaded.log.get("cluster_id"), loaded.log.get(
                    "topic_id")) != (self.identity.cluster_id, self.identity.topic_id):
                log.warning("snapshot %s was built from another log (%s, now %s); rebuilding from the log",
                            loaded.snapshot_id, loaded.log, self.identity)
                loaded = None
            self.state, self.offsets.applied, self._paused = ProjectionState(self.settings.segment_bytes), {}, set()
            self._units = Units(partitions)
            if loaded is not None:
                self.state = loaded.state
                self.offsets.applied = dict(loaded.offsets)
                self.stats.loaded_snapshot = loaded.snapshot_id
                log.info("loaded snapshot %s covering %s", loaded.snapshot_id, loaded.offsets)
                if loaded.shredded:
                    log.info("snapshot %s: collections %s left out, their data keys were shredded",
                             loaded.snapshot_id, ", ".join(loaded.shredded))
            tps = [TopicPartition(self.settings.topic, p) for p in partitions]
            consumer.assign(tps)
            for tp in tps:
                start = min(self.offsets.applied.get(tp.partition, -1), self.offsets.catalog.get(tp.partition, -1)) + 1
                if start == 0:
                    consumer.seek_to_beginning(tp)  # nothing applied: from wherever the log starts now
                else:
                    consumer.seek(tp, start)
                self.offsets.verdicts_from[tp.partition] = start
            self.catalog.start_verdicts(partitions)
            self._dlq_done = self._dlq.published(partitions)
            self.offsets.target = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        except BaseException:
            consumer.close()  # recovery is retried with a new consumer
            raise
        self.stats.log_end = dict(self.offsets.target)
        self._consumer = consumer
        self._check_ready()

    def _check_identity(self, consumer: KafkaConsumer, partitions: list[int]) -> LogIdentity:
        """The current log's identity, once it is known to be the one the catalog was built from
        (recorded on first use); else :class:`LogChanged`."""
        now = current_identity(self.settings)
        stored = self.catalog.log_identity()
        recorded = None if stored is None else LogIdentity(*stored)
        found = None if not now.exists else logid.bounds(consumer, self.settings.topic, partitions)
        trouble = logid.problems(recorded, now, self.offsets.catalog, found)
        if trouble:
            self._halt(trouble)
        if recorded is None or (recorded.cluster_id, recorded.topic_id) != (now.cluster_id, now.topic_id):
            self.catalog.record_log_identity(now.cluster_id, now.topic_id)  # first use, or nothing applied yet
        self.log_problem = None
        return now

    def _halt(self, trouble: list[str]) -> None:
        """Stop serving from a projection whose log changed beneath it; raise :class:`LogChanged`."""
        self.log_problem = f"{'; '.join(trouble)}: {logid.advice()}"
        self.ready.clear()
        with self._cond:
            self._cond.notify_all()  # waiters answer the problem instead of waiting on
        log.critical("log of %s changed: %s", self.settings.topic, self.log_problem)
        raise LogChanged(self.log_problem)

    def _check_log(self, force: bool = False) -> None:
        """While running, every few seconds: is the log still the one applied? (see :mod:`consumers.logid`)."""
        now = time.monotonic()
        if self._consumer is None or (not force and now - self._last_log_check < _LOG_CHECK_SECONDS):
            return
        self._last_log_check = now
        trouble = self._log_trouble()
        if trouble:
            self._halt(trouble)

    def _log_trouble(self) -> list[str] | None:
        """What says the log changed (empty: nothing); None when the broker could not be asked."""
        assert self._consumer is not None
        try:
            if self._admin is None:
                self._admin = logid.open_admin(self.settings)  # one client for the projector's life
            current = current_identity(self.settings, self._admin)
            found = (None if not current.exists else
                     logid.bounds(self._consumer, self.settings.topic, sorted(self.offsets.target)))
        except KafkaError as exc:
            log.debug("log identity check failed (retried): %s", exc)
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()
                self._admin = None
            return None
        return logid.problems(self.identity, current, self.offsets.applied, found)

    def _partitions(self, consumer: KafkaConsumer, timeout: float = 30.0) -> list[int]:
        """The topic's partitions; metadata may take a moment to arrive, so wait for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = consumer.partitions_for_topic(self.settings.topic)
            if found:
                return sorted(found)
            time.sleep(0.1)  # each call asks the cluster again when the cache lacks the topic
        consumer.close()
        raise ProjectorError(f"no partition metadata for topic {self.settings.topic} after {timeout}s")

    def _check_ready(self) -> None:
        if self.ready.is_set() or self._consumer is None:
            return
        for p, end in self.offsets.target.items():
            if self._consumer.position(TopicPartition(self.settings.topic, p)) < end:
                return
            held = self._units.first_offset(p)
            if held is not None and held < end:
                return  # a transaction committed before the target is not whole yet
        self.stats.recovery_seconds = time.monotonic() - self._started
        log.info("recovered in %.2fs; positions %s", self.stats.recovery_seconds, self.offsets.applied)
        release_free_memory()
        self.ready.set()

    # Main loop ---------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then take a final snapshot. Recovers first if needed."""
        if self._consumer is None:
            self.recover()
        assert self._consumer is not None
        try:
            while not stop.is_set():
                try:
                    self._follow(stop)
                except LogChanged:  # not ready, with the reason (log_problem); nothing is applied meanwhile
                    while not stop.wait(_LOG_CHECK_SECONDS) and (self._sticky_halt or self._log_trouble() != []):
                        pass  # re-checked: a problem that clears (a broker's passing answer) lets it resume
                    if not stop.is_set():
                        log.warning("the log of %s checks out again; resuming", self.settings.topic)
                        self.log_problem = None
            self._await_snapshot()
            if self._events_since_snapshot or self._snapshot_retry:
                self.snapshot()
            self._commit_kafka(force=True)
        finally:
            with self._cond:
                self._stopped = True  # unbounded waits end: nothing more will be applied here
                self._cond.notify_all()
            self._consumer.close()
            self._dlq.close()
            if self._keys is not None:
                self._keys.close()
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()

    def _follow(self, stop: threading.Event) -> None:
        """The poll/apply loop of :meth:`run`; raises :class:`LogChanged` when the log changes beneath it."""
        while not stop.is_set():
            try:
                self._step(stop)
            except (OffsetOutOfRangeError, LogTruncationError) as exc:  # positions past the log: a changed log
                self._check_log(force=True)  # names the cause when it can (topic id, cluster, offsets)
                self._sticky_halt = True  # Kafka itself says so: no later check can clear it
                self._halt([f"Kafka reports the log behind the position this projection applied ({exc})"])

    def _step(self, stop: threading.Event) -> None:
        """One poll: apply what came, then the periodic duties."""
        assert self._consumer is not None
        try:
            batch = self._consumer.poll(timeout_ms=100)
        except (OffsetOutOfRangeError, LogTruncationError):
            raise
        except KafkaError as exc:
            self.stats.kafka_failures += 1
            log.warning("polling Kafka failed (%s); retrying", exc)
            stop.wait(0.5)
            return
        if not batch and self._events_since_trim >= _TRIM_AFTER_EVENTS:
            release_free_memory()  # idle after a burst: hand the burst's freed heap back
            self._events_since_trim = 0
        for tp in sorted(batch, key=lambda t: t.partition):
            self.process(tp.partition, batch[tp], stop)
        self._apply_units(stop)  # also when nothing came: held records may have waited long enough
        self._check_ready()
        self._housekeeping()
        self._check_log()

    def process(self, partition: int, records: Iterable[Any], stop: threading.Event | None = None) -> None:
        """Apply one partition's records (in offset order).

        Unframed records are applied in sub-batches of at most ``_BATCH_BYTES`` of record values:
        what one catalog transaction holds (rows, checksums) stays bounded, so a large poll does
        not leave the interpreter's heap grown for good. A transaction's records, and what follows
        them on the partition, are held until the whole transaction is (see ``consumers.units``);
        :meth:`_apply_units` then applies and publishes them as one unit."""
        batch: list[Any] = []
        size = 0
        applied_to = self.offsets.applied.get(partition, -1)
        for rec in records:
            if rec.offset <= applied_to:
                continue  # in memory already (replay after a snapshot)
            if self._units.holds(partition) or frame_of(rec.headers) is not None:
                if batch:
                    self._finish({partition: self._apply_records(partition, batch)}, stop)
                    batch, size = [], 0
                self._units.add(partition, rec)
                continue
            batch.append(rec)
            size += len(rec.value or b"")
            if size >= _BATCH_BYTES:
                self._finish({partition: self._apply_records(partition, batch)}, stop)
                batch, size = [], 0
        if batch:
            self._finish({partition: self._apply_records(partition, batch)}, stop)

    def _apply_units(self, stop: threading.Event | None) -> None:
        """Apply what held records can now be applied as units; past the bounds, apply them as before."""
        if not self._units.held_since() and not self._paused:
            return  # nothing held
        self._apply_whole(stop)
        awaited = self._units.awaited()
        self._pace(awaited)
        held = self._units.held_since()
        if not held:
            return
        if self._units.size > self._unit_limit:
            self._give_up(list(held), f"they hold {self._units.size} bytes (limit {self._unit_limit})", stop)
            return
        # A partition that found no whole prefix for a while, though it and every partition awaited
        # were read up to their last stable offset: what it waits for is not on the log (a part
        # that never comes), or transactions of several producers overlap on it without a gap.
        # Its records are applied in log order: the state is the same, the all-at-once view of
        # the transactions it holds is lost (counted in units_split, logged).
        now = time.monotonic()
        late = [p for p, since in held.items() if now - since > _PART_WAIT_SECONDS]
        if late and self._read_to_end(awaited | set(late)):
            self._give_up(late, f"no whole transaction in {_PART_WAIT_SECONDS:.0f}s with partitions "
                                f"{sorted(awaited | set(late))} read to their end", stop)

    def _give_up(self, partitions: list[int], why: str, stop: threading.Event | None) -> None:
        taken = self._units.take_all(partitions)
        self.stats.units_split += 1
        log.warning("applying held records of partitions %s in log order, not as whole transactions: %s",
                    sorted(taken), why)
        for partition, records in sorted(taken.items()):
            for start in range(0, len(records), _SPLIT_RECORDS):
                chunk = records[start:start + _SPLIT_RECORDS]
                self._finish({partition: self._apply_records(partition, chunk)}, stop)
        self._apply_whole(stop)  # parts elsewhere that waited for these no longer do
        self._pace(self._units.awaited())

    def _apply_whole(self, stop: threading.Event | None) -> None:
        """Apply, unit by unit, every held transaction that is whole now."""
        while taken := self._units.take():
            self._apply_unit(taken, stop)

    def _pace(self, awaited: set[int]) -> None:
        """Fetch no more of a partition whose held records wait only for other partitions' parts
        (its buffered records stay bounded); fetch it again once they are applied."""
        if self._consumer is None:
            return
        idle = {p for p in self.offsets.target if self._units.holds(p) and p not in awaited}
        if idle == self._paused:
            return
        topic = self.settings.topic
        if idle - self._paused:
            self._consumer.pause(*[TopicPartition(topic, p) for p in sorted(idle - self._paused)])
        if self._paused - idle:
            self._consumer.resume(*[TopicPartition(topic, p) for p in sorted(self._paused - idle)])
        self._paused = idle

    def _read_to_end(self, partitions: set[int]) -> bool:
        """Whether the consumer has read these partitions up to their last stable offset, asked
        of the broker now (at most once a second; False when it cannot be asked)."""
        if self._consumer is None:
            return True
        tps = [TopicPartition(self.settings.topic, p) for p in sorted(partitions) if p in self.offsets.target]
        now = time.monotonic()
        if now - self._ends_asked < 1.0:
            return False
        self._ends_asked = now
        try:
            ends = self._consumer.end_offsets(tps)
        except KafkaError as exc:
            log.debug("end offsets unavailable: %s", exc)
            return False
        return all(self._consumer.position(tp) >= ends[tp] for tp in tps)

    def _apply_unit(self, taken: dict[int, list[Any]], stop: threading.Event | None) -> None:
        """Apply records of one or more partitions as one step for readers (``ProjectionState.unit``)
        with one catalog transaction, and publish the new positions once."""
        events = {p: [self._decoded(rec) for rec in records] for p, records in taken.items()}
        names = {e.collection for decoded in events.values() for e in decoded if isinstance(e, ev.Event)}
        with self.state.unit(names):
            parts = {p: self._apply_records(p, taken[p], events[p]) for p in sorted(taken)}
        self._finish(parts, stop)
        self.stats.units_applied += 1

    def _decoded(self, rec: Any) -> ev.Event | DecodeError | None:
        """The record's event, the reason it does not decode, or None for an end record (no event)."""
        if is_end(rec.headers):
            return None
        try:
            return decode(rec.value, self._keys)
        except DecodeError as exc:
            return exc

    def _apply_records(self, partition: int, records: list[Any],
                       events: list[ev.Event | DecodeError | None] | None = None) -> _Applied:
        """Apply records (past the in-memory position) to the in-memory state; return what the
        catalog, the dead-letter topic and the verdicts need (see the module doc for the order)."""
        done = _Applied(last=self.offsets.applied.get(partition, -1))
        applied_to = done.last
        catalog_at = self.offsets.catalog.get(partition, -1)
        for i, rec in enumerate(records):
            if rec.offset <= applied_to:
                continue
            done.count += 1
            done.last = rec.offset
            done.bytes += len(rec.value or b"")
            done.timestamps.append(rec.timestamp)
            first_time = rec.offset > catalog_at
            decoded = self._decoded(rec) if events is None else events[i]
            if decoded is None:
                continue  # a transaction's end record: framing, no event
            event = None
            refusal: tuple[str, int, str] | None = None  # reason code, HTTP status, detail
            if erased(decoded, self._keys):
                continue  # crypto-shredded: as if deleted, neither applied nor rejected
            try:
                if isinstance(decoded, DecodeError):
                    raise decoded
                event = decoded
                produced = self.state.apply(event, rec.offset)
                if first_time:
                    done.changes.extend(produced)
                self.stats.events_applied += 1
                self.stats.vectors_applied += len(getattr(event, "ids", ()))
                if isinstance(event, ev.VectorsUpserted):
                    done.vectors += len(event.ids) * event.vectors.shape[1] / 128
                elif isinstance(event, ev.CollectionUpdated) and (coll := self.state.get(event.collection)):
                    done.vectors += len(coll) * coll.config.dimension / 128  # its graphs were built again
            except DecodeError as exc:
                refusal = (exc.reason, 400, str(exc))
            except Rejected as exc:
                if erased(event, self._keys, exc):
                    if first_time and isinstance(event, ev.CollectionDeleted):
                        # The state never had it (its creation was shredded, or the snapshot loaded
                        # left it out): the catalog may, from before; the deletion reaches it.
                        done.changes.append(DropCollection(event.collection))
                    continue
                refusal = ("rejected", exc.status, str(exc))
            except Exception as exc:  # noqa: BLE001 - a handler bug must not stop the projector
                log.exception("handler failed on %s/%d/%d", self.settings.topic, partition, rec.offset)
                refusal = ("handler-error", 500, f"{type(exc).__name__}: {exc}")
            if refusal is not None:
                reason, status, detail = refusal
                producer_id = None if event is None else event.meta.producer_id
                key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
                rejection = Rejection(partition, rec.offset, key, reason, status, detail, producer_id)
                done.refused.append(rejection)
                if first_time:
                    done.changes.append(rejection)
                    self.stats.dead_letters += 1
                    self.stats.dead_letters_by_reason[reason] = self.stats.dead_letters_by_reason.get(reason, 0) + 1
                    if not self._dlq_done.holds(partition, rec.offset):  # a replay or replica does not re-send
                        done.letters.append(DeadLetter(partition, rec.offset, rec.key, rec.value, reason, detail,
                                                       producer_id, status))
        return done

    def _finish(self, parts: dict[int, _Applied], stop: threading.Event | None) -> None:
        """Steps 2-4 for records applied in memory: dead letters, one catalog transaction, publish."""
        parts = {p: done for p, done in parts.items() if done.count}
        if not parts:
            return
        self._dlq.send([letter for done in parts.values() for letter in done.letters])
        ahead = {p: done.last for p, done in parts.items() if done.last > self.offsets.catalog.get(p, -1)}
        if ahead:
            self._commit_catalog([c for done in parts.values() for c in done.changes], ahead, stop)
            self.offsets.catalog.update(ahead)
        with self._cond:
            for p, done in parts.items():
                self._remember(p, done.refused)
                self.offsets.applied[p] = done.last
            self._cond.notify_all()
        self._note_timestamps(parts)
        count = sum(done.count for done in parts.values())
        self._events_since_snapshot += count
        self._vectors_since_snapshot += sum(done.vectors for done in parts.values())
        self._bytes_since_snapshot += sum(done.bytes for done in parts.values())
        self._events_since_trim += count

    def _note_timestamps(self, parts: dict[int, _Applied]) -> None:
        """Just published: each partition's newest record time and, once ready (recovery replays
        records of any age), how old each record was when readers could first see it."""
        now_ms = time.time() * 1000
        for p, done in parts.items():
            stamps = [t for t in done.timestamps if t >= 0]  # -1: a record without a timestamp
            if not stamps:
                continue
            self.stats.applied_timestamps[p] = stamps[-1] / 1000
            if self.ready.is_set():
                self.stats.apply_latency.observe_many([(now_ms - t) / 1000 for t in stamps])

    def _commit_catalog(self, changes: list[Change], positions: dict[int, int],
                        stop: threading.Event | None) -> None:
        delay = 0.2
        while True:
            try:
                self.catalog.commit(changes, positions)
                if self._stalled:
                    with self._cond:
                        self._stalled = False
                return
            except CatalogUnavailable as exc:
                with self._cond:
                    self._stalled = True
                    self._cond.notify_all()
                self.stats.catalog_failures += 1
                log.warning("catalog unavailable, pausing ingest (retry in %.1fs): %s", delay, exc)
                if stop is None:
                    time.sleep(delay)
                elif stop.wait(delay):
                    raise  # shutting down: the batch stays unapplied in the catalog and is replayed
                delay = min(delay * 2, 5.0)

    def request_snapshot(self, timeout: float) -> str | None:
        """Ask the projector's thread for a snapshot between batches; wait for its name (None: failed)."""
        done: threading.Event = threading.Event()
        slot: list[str | None] = [None]
        with self._requests_lock:
            self._snapshot_requests.append((done, slot))
        if not done.wait(timeout):
            raise ConsistencyTimeout(f"no snapshot within {timeout}s (the projector may be busy)")
        return slot[0]

    def _serve_snapshot_requests(self) -> None:
        with self._requests_lock:
            requests, self._snapshot_requests = self._snapshot_requests, []
        if not requests:
            return
        name = self.snapshot()
        for done, slot in requests:
            slot[0] = name
            done.set()

    def _housekeeping(self) -> None:
        if self._snapshotting is not None and not self._snapshotting.is_alive():
            self._await_snapshot()
        self._serve_snapshot_requests()
        now = time.monotonic()
        if self._consumer is not None:
            self.stats.positions = {p: self._consumer.position(TopicPartition(self.settings.topic, p))
                                    for p in self.offsets.target}
        due = now >= self._snapshot_retry_at and (
            self._snapshot_retry or
            self._events_since_snapshot >= self.settings.snapshot_every_events or
            self._vectors_since_snapshot >= self.settings.snapshot_every_vectors or
            self._bytes_since_snapshot >= self.settings.snapshot_every_bytes or
            (self._events_since_snapshot and now - self._last_snapshot >= self.settings.snapshot_every_seconds))
        if due:
            self._snapshot_in_background()
        self._commit_kafka()
        if now - self._last_end_check >= 2.0 and self._consumer is not None:
            self._last_end_check = now
            try:
                tps = [TopicPartition(self.settings.topic, p) for p in self.offsets.target]
                self.stats.log_end = {tp.partition: o for tp, o in self._consumer.end_offsets(tps).items()}
                self.stats.lso_held = stall.observe(self._consumer, self.settings.topic, self.stats.log_end,
                                                    self.stats.lso_held)
            except KafkaError as exc:
                self.stats.kafka_failures += 1
                log.debug("end offsets unavailable: %s", exc)

    def snapshot(self) -> str | None:
        """Write a snapshot of the current state and wait until it is durable (after the one being
        completed in the background, if any). Call from the projector's thread or when it is idle."""
        self._await_snapshot()
        job = self._begin_snapshot()
        name = None if job is None else self._complete_snapshot(job)
        self._adopt_snapshot()
        return name

    def _snapshot_in_background(self) -> None:
        """Write a snapshot's files now (the part that reads the state: what changed, segment by
        segment) and let a thread make it durable (fsync, checksums, manifest, rename) while ingest
        goes on. One at a time: nothing is begun while the previous one completes."""
        if self._snapshotting is not None and self._snapshotting.is_alive():
            return
        job = self._begin_snapshot()
        if job is not None:
            self._snapshotting = threading.Thread(target=self._complete_snapshot, args=(job,),
                                                  name="snapshot", daemon=True)
            self._snapshotting.start()

    def _await_snapshot(self) -> None:
        if self._snapshotting is not None:
            self._snapshotting.join()
            self._snapshotting = None
        self._adopt_snapshot()

    def _adopt_snapshot(self) -> None:
        """After a snapshot became durable (on the projector's thread): quantized segments read
        their float32 rows from the files it wrote instead of RAM."""
        done, self._durable = self._durable, None
        if done is not None:
            done.adopt_rows()

    def _begin_snapshot(self) -> tuple[snapshots.Pending, float] | None:
        started = time.monotonic()
        identity = None if self.identity is None else {"cluster_id": self.identity.cluster_id,
                                                       "topic_id": self.identity.topic_id}
        self._snapshot_retry = False
        try:
            pending = snapshots.begin(self.state, dict(self.offsets.applied), self.settings.snapshot_dir,
                                      self.settings.topic, self.settings.snapshots_keep, identity, keys=self._keys)
        except Exception as exc:  # noqa: BLE001 - disk full, unwritable, a bug: serving goes on regardless
            self._snapshot_failed(exc)
            return None
        # What a restart would replay is counted from this snapshot's offsets on.
        self._events_since_snapshot = self._vectors_since_snapshot = self._bytes_since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self.stats.last_snapshot_stall_seconds = self._last_snapshot - started
        return pending, started

    def _complete_snapshot(self, job: tuple[snapshots.Pending, float]) -> str | None:
        pending, started = job
        try:
            path = pending.complete()
        except Exception as exc:  # noqa: BLE001 - the same: the log still holds everything
            self._snapshot_failed(exc)
            return None
        self._durable = pending
        self.stats.snapshots_taken += 1
        self.stats.last_snapshot_error = None
        self._snapshot_backoff, self._snapshot_retry_at = 0.0, 0.0
        self.stats.last_snapshot_seconds = time.monotonic() - started
        self.stats.snapshot_durations.observe(self.stats.last_snapshot_seconds)
        self.stats.last_snapshot_written_bytes = snapshots.written_bytes(path)
        return path.name

    def _snapshot_failed(self, exc: Exception) -> None:
        self.stats.snapshot_failures += 1
        self.stats.last_snapshot_error = f"{type(exc).__name__}: {exc}"
        self._snapshot_backoff = min(max(2 * self._snapshot_backoff, 1.0), 60.0)
        self._snapshot_retry_at = time.monotonic() + self._snapshot_backoff
        self._snapshot_retry = True  # due again once the backoff has passed
        log.error("snapshot failed, serving goes on (the log still holds everything; next try in %.0fs): %s",
                  self._snapshot_backoff, self.stats.last_snapshot_error)

    def _commit_kafka(self, force: bool = False) -> None:
        if self._consumer is None or not self.offsets.applied:
            return
        if not force and time.monotonic() - self._last_kafka_commit < 5.0:
            return
        self._last_kafka_commit = time.monotonic()
        offsets = {TopicPartition(self.settings.topic, p): OffsetAndMetadata(o + 1, "", -1)
                   for p, o in self.offsets.applied.items()}
        try:
            self._consumer.commit(offsets)
        except (KafkaError, ValueError, AssertionError) as exc:
            log.debug("committing the offset hint failed (harmless): %s", exc)

    def _remember(self, partition: int, refused: list[Rejection]) -> None:
        """Keep this sub-batch's rejections for verdicts (call holding ``_cond``); bounded in count."""
        if not refused:
            return
        kept = self._rejected.setdefault(partition, {})
        for rejection in refused:
            kept[rejection.offset] = rejection
        while len(kept) > _VERDICTS_KEPT:  # oldest first (insertion order is offset order)
            oldest = next(iter(kept))
            del kept[oldest]
            self.offsets.verdicts_from[partition] = oldest + 1

    @property
    def catalog(self) -> Catalog:
        """The projection's catalog, opened (created, migrated) on first use; raises
        :class:`CatalogUnavailable` while the database cannot be reached."""
        if self._catalog is None:
            self._catalog = Catalog.of(self.settings, create=True, keys=self._keys)
        return self._catalog

    # Readers (the HTTP layer's ProjectionReader) -------------------------------------
    def serving(self) -> bool:
        """Whether recovery caught up and the log checks out (reads and writes are answered)."""
        return self.ready.is_set()

    def positions(self) -> dict[int, int]:
        """The last offset applied per partition, as readers see it."""
        with self._cond:
            return dict(self.offsets.applied)

    def partitions(self) -> list[int]:
        """The topic's partitions (as last seen)."""
        return sorted(self.stats.log_end)

    def log_tag(self) -> str | None:
        """The short name of the log being applied (write tokens carry it), None before recovery."""
        return None if self.identity is None else self.identity.tag

    def collection(self, name: str) -> Collection | None:
        return self.state.get(name)

    def collections(self) -> dict[str, Collection]:
        """Every collection by name, as one published state."""
        return dict(self.state.collections)

    def aliases(self) -> dict[str, str]:
        """Every collection alias, alias -> collection name, as one published state."""
        return dict(self.state.aliases)

    def wait_for(self, partition: int, offset: int, timeout: float | None) -> None:
        """Block until ``partition:offset`` is applied (``timeout=None``: however long that takes).

        Raises :class:`ConsistencyTimeout` after ``timeout`` — or at once, with no timeout, while
        the projector is paused because the catalog refuses commits (so waiting requests do not
        pile up without bound; the write is durable) — and :class:`ProjectorError` if the
        projector stopped first (nothing more will be applied by this process).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.offsets.applied.get(partition, -1) < offset:
                if deadline is None and self._stalled:
                    raise ConsistencyTimeout(f"write {partition}:{offset} not applied yet: the projector is paused "
                                             "while the catalog is unavailable")
                if self.log_problem is not None:
                    raise LogChanged(f"write {partition}:{offset} cannot be applied here: {self.log_problem}")
                if self._stopped:
                    raise ProjectorError(f"the projector stopped before applying {partition}:{offset}; the write "
                                         "is durable in Kafka and will be applied when a projector runs")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ConsistencyTimeout(f"write {partition}:{offset} not applied within {timeout}s "
                                             f"(applied: {self.offsets.applied.get(partition, -1)})")
                self._cond.wait(remaining)

    def verdict(self, partition: int, offsets: Iterable[int]) -> list[Rejection]:
        """The rejections among these applied records (see :meth:`wait_for`); empty: all were applied."""
        offsets = list(offsets)
        with self._cond:
            floor = self.offsets.verdicts_from.get(partition, 0)
            kept = self._rejected.get(partition, {})
            recent = [kept[o] for o in offsets if o >= floor and o in kept]
        older = [o for o in offsets if o < floor]
        if older:
            start = self.catalog.verdicts_start(partition)
            if start is None or min(older) < start:
                raise VerdictUnknown(f"the catalog records verdicts of partition {partition} only from offset "
                                     f"{start}; {partition}:{min(older)} is older")
        return sorted(self.catalog.rejections(partition, older) + recent, key=lambda r: r.offset)

    def lag(self) -> dict[int, int]:
        """Records (transaction markers included) between the read position and the log end."""
        return {p: max(0, end - self.stats.positions.get(p, 0)) for p, end in self.stats.log_end.items()}
