"""``VectorProducer``: the library producer apps (and the HTTP server) publish events with.

Delivery contract:
- Every call validates first and raises a ``schemas.errors.ValidationError`` subclass
  naming the offending item; nothing is published for an invalid call.
- A call returns once Kafka acknowledged every record it wrote (``acks=all``, idempotent
  producer: retries never duplicate). The returned :class:`WriteToken` is the
  ``partition:offset`` of the call's last record; a projection that applied it has
  applied the whole call.
- Records are keyed by collection, so one collection's events are totally ordered.
- A batch larger than the topic's maximum message size is split into several events,
  published in one Kafka transaction: consumers reading ``read_committed`` see all of
  them or none, even if the producer dies half-way.
- ``transaction()`` groups any calls the same way (commit on success, abort on error).
  Its records are framed (``schemas.framing``) so a projection applies them as one unit:
  its readers, too, see all of them or none. A transaction is bounded by
  ``max_transaction_bytes`` (:class:`~producers.errors.TransactionTooLarge`); one call
  larger than that outside ``transaction()`` (a bulk load) is published as several
  transactions, each visible whole. A transaction in which a write failed (raised, even if
  the exception was caught inside the block) is aborted, never committed.
- ``wait=True`` on a call returns only once the projection applied it, and raises
  :class:`~producers.errors.WriteRejected` if the projection refused it (the event went to
  the dead-letter topic), :class:`~producers.errors.WriteNotApplied` after ``timeout``
  seconds (the write is durable; ``timeout=None`` waits as long as it takes),
  :class:`~producers.errors.VerdictUnknown` when no verdict can be read (no catalog where the
  settings point). The verdict is read from the projection's catalog (``verdicts``, by
  default the catalog these settings name). ``wait=True`` inside ``transaction()`` is refused
  before anything is published: wait on the token after the commit.
- Every event record carries attribution headers (``schemas.attribution``): ``vz-caller``, who
  asked for the write (``caller=``, by default the producer id; or what ``attribution()`` says
  at the time of the call, as the server does per request) and ``vz-request-id`` when known.
  Projections ignore them; ``vectorizer audit`` and the point history read them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar

import numpy as np
from kafka import KafkaProducer
from kafka.errors import KafkaError, ProducerFencedError

from infra.errors import BrokerUnavailable
from infra.kafka import clients
from infra.kafka.topics import ensure_topics
from infra.keyring import Keyring
from infra.settings import Settings
from producers.errors import (
    ProducerFenced,
    PublishFailed,
    TransactionTooLarge,
    VerdictUnknown,
    WriteNotApplied,
    WriteRejected,
)
from schemas import attribution as who
from schemas import events as ev
from schemas import framing, sealing
from schemas import validation as check
from schemas.codec import encode
from schemas.errors import InvalidPayload, ValidationError
from schemas.ids import PointId

# Room for the record batch framing, the envelope and ids, under max.message.bytes.
_FRAMING_BYTES = 64 * 1024
_MAX_VECTORS_PER_EVENT = 4096
# Sealed only when encryption is on; these stay in clear, as they carry names but no vectors or
# payloads, and a deletion must replay even once the collection's keys are shredded.
_CLEAR_EVENTS = (ev.CollectionDeleted, ev.AliasesChanged)


@dataclass(frozen=True, order=True)
class WriteToken:
    """Where a write landed: ``"<partition>:<offset>"`` on the events topic, or
    ``"<partition>:<offset>@<log>"`` when it names its log (the first 8 hex digits of the
    topic id: the server's answers do), so a token from another log — a recreated topic,
    another cluster — is refused instead of being satisfied by a coincidence of numbers.

    ``offsets`` lists every record the write published (a large batch is several events),
    so its verdict can be read exactly; a token parsed from text knows only its last offset.
    """

    partition: int
    offset: int
    offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)
    log: str | None = field(default=None, compare=False)

    @property
    def records(self) -> tuple[int, ...]:
        """The offsets of the write's records (the last one alone when unknown)."""
        return self.offsets or (self.offset,)

    @classmethod
    def joined(cls, tokens: Sequence[WriteToken]) -> WriteToken:
        """One token for several calls on one partition (a transaction): the last, with every record."""
        last = tokens[-1]
        return cls(last.partition, last.offset, tuple(o for t in tokens for o in t.records), last.log)

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}" if self.log is None else f"{self.partition}:{self.offset}@{self.log}"

    @classmethod
    def parse(cls, text: str) -> WriteToken:
        position, at, log = text.partition("@")
        part, sep, off = position.partition(":")
        if not sep or not part.isascii() or not part.isdigit() or not off.isascii() or not off.isdigit() or (
                at and not (len(log) == 8 and all(c in "0123456789abcdef" for c in log))):
            raise ValueError(f"write token {text!r}: expected '<partition>:<offset>' (optionally '@<log>', "
                             "8 hex digits)")
        return cls(int(part), int(off), log=log or None)


@dataclass
class _Frame:
    """The open transaction's framing (``schemas.framing``): its id, what it wrote, and where."""

    txn: str
    size: int = 0
    partitions: set[int] = field(default_factory=set)
    broken: str | None = None  # why it cannot commit: a write of it failed (caught or not)


DimensionLookup = Callable[[str], "int | None"]
#: Who is writing now, read at each call (the server: the caller and request id of the request served).
Attributor = Callable[[], who.Attribution]


class Verdicts(Protocol):
    """Where a producer reads the projection's verdict on its writes (``consumers.verdicts``)."""

    def wait(self, partition: int, offsets: Sequence[int], timeout: float | None) -> Sequence[Any] | None:
        """Rejections (with ``offset``, ``status``, ``reason``, ``detail``) among ``offsets`` once
        applied; ``None`` if not applied within ``timeout``."""
        ...

    def close(self) -> None: ...


class VectorProducer:
    """Validates, encodes and publishes events. Thread-safe; use as a context manager."""

    def __init__(self, settings: Settings, *, producer_id: str | None = None,
                 dimensions: DimensionLookup | None = None, transaction_timeout_ms: int | None = None,
                 verdicts: Verdicts | None = None, caller: str | None = None,
                 attribution: Attributor | None = None) -> None:
        """``caller``: the name this producer's writes are attributed to in the audit trail (default:
        the producer id); ``attribution``: called at each write for the caller and request id of the
        moment (a ``None`` caller falls back to ``caller``)."""
        self.settings = settings
        self._verdicts = verdicts
        self.producer_id = producer_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.caller = caller or self.producer_id
        self._attribution = attribution
        self._dimensions = dimensions
        self._known_dims: dict[str, int] = {}
        # How long the broker lets a transaction run, and so the longest a producer killed inside
        # one holds read_committed readers back (``Settings.transaction_timeout`` unless given).
        self._txn_timeout_ms = (round(settings.transaction_timeout * 1000) if transaction_timeout_ms is None
                                else transaction_timeout_ms)
        try:
            ensure_topics(settings)
        except BrokerUnavailable as exc:
            raise PublishFailed(str(exc)) from exc
        # Encryption on: events are sealed with their collection's data key (refuses a wrong KEK here).
        self._keyring = Keyring.open(settings) if settings.encryption else None
        self._kafka = clients.producer(settings, f"producer-{self.producer_id}", **self._client_config(),
                                       enable_idempotence=True)
        self._txn_kafka: KafkaProducer | None = None
        self._txn_lock = threading.RLock()
        self._in_txn = threading.local()
        self._verdicts_lock = threading.Lock()

    def _client_config(self) -> dict[str, Any]:
        return {"max_request_size": self.settings.max_message_bytes, "linger_ms": 2, "batch_size": 1024 * 1024,
                "retries": 2**31 - 1, "request_timeout_ms": 30_000, "delivery_timeout_ms": 60_000,
                "max_block_ms": 10_000}  # an unreachable broker surfaces as PublishFailed in seconds

    # Operations --------------------------------------------------------------------
    def create_collection(self, name: str, dimension: int, metric: str = "cosine", *, m: int = 16,
                          ef_construction: int = 200, ef: int = 64, kind: str = "dynamic",
                          embedder: dict[str, Any] | None = None, quantization: dict[str, Any] | None = None,
                          on_disk: bool | None = None, vectors: dict[str, dict[str, Any]] | None = None,
                          sparse_vectors: dict[str, dict[str, Any]] | None = None, wait: bool = False,
                          timeout: float | None = None) -> WriteToken:
        """A new collection. ``dimension`` and the HNSW and quantization arguments describe its unnamed
        vector (``dimension`` 0: it has none); ``vectors``: its named dense vectors,
        ``{name: {size, metric, m, ef_construction, ef, quantization, on_disk}}`` (``quantization``
        canonical JSON); ``sparse_vectors``: ``{name: {"modifier": "idf"}}`` or ``{name: {}}``."""
        self._refuse_wait_in_transaction(wait)
        check.collection_name(name)
        check.metric(metric)
        named = _canonical(vectors), _canonical(sparse_vectors)
        check.named_vectors(*named)
        check.bounded_int(dimension, "dimension", minimum=0 if any(named) else 1, maximum=65_536)
        check.bounded_int(m, "m", minimum=2, maximum=256)
        check.bounded_int(ef_construction, "ef_construction", maximum=10_000)
        check.bounded_int(ef, "ef", maximum=10_000)
        if kind not in ev.KINDS:
            raise ValidationError(f"kind {kind!r}: expected one of {', '.join(ev.KINDS)}")
        event = ev.CollectionCreated(self._meta(name), dimension, metric, m, ef_construction, ef, kind,  # type: ignore[arg-type]
                                     None if embedder is None else json.dumps(embedder, sort_keys=True),
                                     check.quantization(quantization), check.optional_bool(on_disk, "on_disk"),
                                     *named)
        token = self._publish([event])
        self._known_dims[name] = dimension
        if getattr(self._in_txn, "active", False):  # the dimension later calls of this transaction check against
            self._in_txn.created[name] = dimension
        return self._settle(token, wait, timeout)

    def update_collection(self, name: str, settings: dict[str, Any], *, wait: bool = False,
                          timeout: float | None = None) -> WriteToken:
        """New index settings (Qdrant's ``PATCH /collections/{c}``), in Qdrant's shapes:
        ``{"hnsw_config": {"m", "ef_construct"}, "quantization_config": {...} or "Disabled",
        "vector": {"hnsw_config", "quantization_config", "on_disk"}}`` (``vector``: the unnamed
        vector's own settings, which win over the collection's). The projection rebuilds the
        collection's graphs when what they are built with changes."""
        self._refuse_wait_in_transaction(wait)
        check.collection_name(name)
        event = ev.CollectionUpdated(self._meta(name), check.collection_diff(settings))
        return self._settle(self._publish([event]), wait, timeout)

    def delete_collection(self, name: str, *, wait: bool = False, timeout: float | None = None) -> WriteToken:
        self._refuse_wait_in_transaction(wait)
        check.collection_name(name)
        self._known_dims.pop(name, None)
        return self._settle(self._publish([ev.CollectionDeleted(self._meta(name))]), wait, timeout)

    def change_aliases(self, actions: Sequence[ev.AliasAction], *, collection: str | None = None,
                       wait: bool = False, timeout: float | None = None) -> WriteToken:
        """Qdrant's ``POST /collections/aliases``: ``actions`` apply in order, all or none (the
        projection rejects a set that cannot apply whole: an alias to a missing collection, an alias
        named like a collection, a rename of a missing alias). ``collection``: the record's key, the
        first collection the actions concern (default: the first ``create``'s), so that they are
        ordered with that collection's events."""
        self._refuse_wait_in_transaction(wait)
        if not actions:
            raise ValidationError("actions: at least one alias action is needed")
        for i, action in enumerate(actions):
            where = f"actions[{i}]"
            if action.kind not in ("create", "delete", "rename"):
                raise ValidationError(f"{where}: unknown alias action {action.kind!r}")
            check.alias_name(action.alias, f"{where}.alias_name" if action.kind != "rename"
                             else f"{where}.old_alias_name")
            if (action.collection is not None) != (action.kind == "create"):
                raise ValidationError(f"{where}: collection_name belongs to create_alias, and only to it")
            if (action.new_alias is not None) != (action.kind == "rename"):
                raise ValidationError(f"{where}: new_alias_name belongs to rename_alias, and only to it")
            if action.collection is not None:
                check.collection_name(action.collection)
            if action.new_alias is not None:
                check.alias_name(action.new_alias, f"{where}.new_alias_name")
        key = collection or next((a.collection for a in actions if a.collection is not None), "")
        event = ev.AliasesChanged(self._meta(key), tuple(actions))
        return self._settle(self._publish([event]), wait, timeout)

    def upsert(self, collection: str, ids: Sequence[object], vectors: Any,
               payloads: Sequence[object] | None = None, *, named: Sequence[ev.NamedRows] = (),
               sparse: Sequence[ev.SparseRows] = (), update_mode: ev.UpdateMode = "upsert",
               update_filter: str | None = None, stored_form: bool = False, wait: bool = False,
               timeout: float | None = None) -> WriteToken:
        """Insert or replace points (whole: a vector not given is removed). ``vectors``: anything
        ``numpy.asarray`` makes ``(n, dim)``, the unnamed vectors, or ``None`` in a collection without
        one; ``named`` / ``sparse``: the named vectors some of the points carry. ``update_mode`` and
        ``update_filter`` (a Qdrant filter as JSON) make it Qdrant's conditional upsert, decided when
        the projection applies it. ``stored_form``: the rows are as the collection stores them (cosine:
        already normalised, as a snapshot holds them) and are kept bit for bit."""
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        pids = check.point_ids(ids)
        arr = np.empty((len(pids), 0), np.float32) if vectors is None else \
            check.vectors(vectors, len(pids), self.dimension_of(collection))
        pls = check.payloads(payloads, len(pids))
        named_rows, sparse_rows = _checked_blocks(named, sparse, len(pids))
        if update_mode not in ev.UPDATE_MODES:
            raise ValidationError(f"update_mode: expected one of {', '.join(ev.UPDATE_MODES)}, "
                                        f"got {update_mode!r}")
        events: list[ev.Event] = [dataclasses.replace(e, update_mode=update_mode, update_filter=update_filter,
                                                      stored_form=stored_form)
                                  if update_mode != "upsert" or update_filter is not None or stored_form else e
                                  for e in self._split_upsert(collection, pids, arr, pls, named_rows, sparse_rows)]
        return self._settle(self._publish(events), wait, timeout)

    def update_vectors(self, collection: str, ids: Sequence[object], *, named: Sequence[ev.NamedRows] = (),
                       sparse: Sequence[ev.SparseRows] = (), update_filter: str | None = None,
                       wait: bool = False, timeout: float | None = None) -> WriteToken:
        """Replace some named vectors of existing points (Qdrant's ``update_vectors``; ``""``: the unnamed
        one); with ``update_filter`` (a Qdrant filter as JSON) only of the points matching it when applied."""
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        pids = check.point_ids(ids)
        named_rows, sparse_rows = _checked_blocks(named, sparse, len(pids))
        token = self._publish([ev.PointVectorsUpdated(self._meta(collection), pids, named_rows, sparse_rows,
                                                      update_filter)])
        return self._settle(token, wait, timeout)

    def delete_vectors(self, collection: str, ids: Sequence[object], names: Sequence[str], *, wait: bool = False,
                       timeout: float | None = None) -> WriteToken:
        """Remove the named vectors ``names`` from the points (Qdrant's ``delete_vectors``)."""
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        checked = tuple(name if name == "" else check.vector_name(name, field=f"vector[{i}]")
                        for i, name in enumerate(names))
        token = self._publish([ev.PointVectorsDeleted(self._meta(collection), check.point_ids(ids), checked)])
        return self._settle(token, wait, timeout)

    def delete(self, collection: str, ids: Sequence[object], *, wait: bool = False,
               timeout: float | None = None) -> WriteToken:
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        token = self._publish([ev.VectorsDeleted(self._meta(collection), check.point_ids(ids))])
        return self._settle(token, wait, timeout)

    def set_payload(self, collection: str, ids: Sequence[object], payload: dict[str, Any],
                    key: str | None = None, *, wait: bool = False, timeout: float | None = None) -> WriteToken:
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        path = None if key is None else check.payload_path(key)
        token = self._publish([ev.PayloadSet(self._meta(collection), check.point_ids(ids),
                                             check.payload(payload), path)])
        return self._settle(token, wait, timeout)

    def overwrite_payload(self, collection: str, ids: Sequence[object], payload: dict[str, Any], *,
                          wait: bool = False, timeout: float | None = None) -> WriteToken:
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        token = self._publish([ev.PayloadOverwritten(self._meta(collection), check.point_ids(ids),
                                                     check.payload(payload))])
        return self._settle(token, wait, timeout)

    def delete_payload_keys(self, collection: str, ids: Sequence[object], keys: Sequence[str], *,
                            wait: bool = False, timeout: float | None = None) -> WriteToken:
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        checked = check.payload_paths(keys)
        token = self._publish([ev.PayloadKeysDeleted(self._meta(collection), check.point_ids(ids), checked)])
        return self._settle(token, wait, timeout)

    def clear_payload(self, collection: str, ids: Sequence[object], *, wait: bool = False,
                      timeout: float | None = None) -> WriteToken:
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        token = self._publish([ev.PayloadCleared(self._meta(collection), check.point_ids(ids))])
        return self._settle(token, wait, timeout)

    def create_payload_index(self, collection: str, field_name: str, field_schema: str | dict[str, Any], *,
                             wait: bool = False, timeout: float | None = None) -> WriteToken:
        """A payload index on ``field_name`` (Qdrant's ``PUT /collections/{c}/index``): ``field_schema``
        is a type name (``"keyword"``, ``"integer"``, ``"float"``, ``"bool"``, ``"geo"``, ``"text"``,
        ``"datetime"``, ``"uuid"``) or that type's parameters (``{"type": "keyword", ...}``)."""
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        event = ev.PayloadIndexCreated(self._meta(collection), check.payload_path(field_name, field="field_name"),
                                       check.payload_field_schema(field_schema))
        return self._settle(self._publish([event]), wait, timeout)

    def delete_payload_index(self, collection: str, field_name: str, *, wait: bool = False,
                             timeout: float | None = None) -> WriteToken:
        self._refuse_wait_in_transaction(wait)
        check.collection_name(collection)
        event = ev.PayloadIndexDropped(self._meta(collection), check.payload_path(field_name, field="field_name"))
        return self._settle(self._publish([event]), wait, timeout)

    # Verdicts ----------------------------------------------------------------------
    def wait_applied(self, token: WriteToken, timeout: float | None = None) -> WriteToken:
        """Return ``token`` once the projection applied every record of it; raise
        :class:`WriteRejected` if it refused one, :class:`WriteNotApplied` after ``timeout``,
        :class:`VerdictUnknown` if no verdict can be read."""
        self._refuse_wait_in_transaction(True)
        with self._verdicts_lock:
            if self._verdicts is None:
                self._verdicts = default_verdicts(self.settings)
            verdicts = self._verdicts
        refused = verdicts.wait(token.partition, token.records, timeout)
        if refused is None:
            raise WriteNotApplied(f"write {token} is durable in Kafka but no projection applied it within "
                                  f"{timeout}s (is a server or projector running on this topic?)")
        if refused:
            raise WriteRejected.of(token.partition, refused, len(token.records))
        return token

    def _refuse_wait_in_transaction(self, wait: bool) -> None:
        if wait and getattr(self._in_txn, "active", False):
            raise ValidationError("wait: a write inside a transaction is applied only after the commit; "
                                        "wait on its token (wait_applied) after the transaction")

    def _settle(self, token: WriteToken, wait: bool, timeout: float | None) -> WriteToken:
        return self.wait_applied(token, timeout) if wait else token

    def publish(self, event: ev.Event) -> WriteToken:
        """Publish an already-built event as is (tools, tests). Not validated beyond encoding."""
        return self._publish([event])

    # Transactions ------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[VectorProducer]:
        """All calls inside become visible together, or never: to ``read_committed`` consumers
        (Kafka's transaction) and to a projection's readers (its records are framed, see
        ``schemas.framing``: a projector applies them as one unit). A transaction writing more
        than ``max_transaction_bytes`` raises :class:`TransactionTooLarge` and is aborted."""
        if getattr(self._in_txn, "active", False):
            yield self
            return
        with self._txn_lock:
            try:
                kafka = self._transactional()
                kafka.begin_transaction()
            except KafkaError as exc:
                self._drop_transactional()
                raise _publish_failed("starting a transaction failed", exc) from exc
            self._in_txn.active = True
            self._in_txn.frame = _Frame(uuid.uuid4().hex)
            self._in_txn.created = {}
            try:
                yield self
                self._end_frame(kafka, self._in_txn.frame)
            except BaseException:
                self._in_txn.active = False
                with contextlib.suppress(PublishFailed):
                    self._finish(kafka, commit=False)
                raise
            self._in_txn.active = False
            self._finish(kafka, commit=True)

    def _end_frame(self, kafka: KafkaProducer, frame: _Frame) -> None:
        """Write the transaction's end record to every partition it wrote to (before the commit);
        refuse to commit one that a failed write left incomplete (it is aborted)."""
        if frame.broken is not None:
            raise PublishFailed(f"the transaction is aborted, not committed: {frame.broken}")
        if not frame.partitions:
            return
        headers = framing.end_headers(frame.txn, frame.partitions)
        try:
            futures = [kafka.send(self.settings.topic, value=b"", partition=p, headers=headers)
                       for p in sorted(frame.partitions)]
            for f in futures:
                f.get(timeout=self.settings.publish_timeout)
        except KafkaError as exc:
            raise _publish_failed("Kafka did not acknowledge the transaction's end records", exc) from exc

    def fence(self) -> None:
        """Start transactions now: an earlier producer with the same id is fenced at once, not at its next commit."""
        with self._txn_lock:
            try:
                self._transactional()
            except KafkaError as exc:
                raise _publish_failed("initialising transactions failed", exc) from exc

    def _transactional(self) -> KafkaProducer:
        if self._txn_kafka is None:
            kafka = clients.producer(self.settings, f"producer-{self.producer_id}", **self._client_config(),
                                     transactional_id=f"vectorizer-{self.producer_id}",
                                     transaction_timeout_ms=self._txn_timeout_ms)
            try:
                kafka.init_transactions()  # aborts what an earlier instance with this id left open
            except KafkaError:
                kafka.close(timeout=0)
                raise
            self._txn_kafka = kafka
        return self._txn_kafka

    def _drop_transactional(self) -> None:
        """Forget a transactional producer in an unknown state; the next one's init aborts its transaction."""
        if self._txn_kafka is not None:
            with contextlib.suppress(Exception):
                self._txn_kafka.close(timeout=0)
            self._txn_kafka = None

    def _finish(self, kafka: KafkaProducer, commit: bool) -> None:
        """Commit or abort, waiting at most ``publish_timeout`` (kafka-python's own wait is unbounded)."""
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                (kafka.commit_transaction if commit else kafka.abort_transaction)()
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                outcome.append(exc)

        worker = threading.Thread(target=run, name="kafka-transaction-end", daemon=True)
        worker.start()
        worker.join(self.settings.publish_timeout)
        verb = "committing" if commit else "aborting"
        if not outcome:
            self._drop_transactional()
            raise PublishFailed(f"{verb} the transaction did not finish within {self.settings.publish_timeout:.0f}s; "
                                "its outcome is unknown")
        error = outcome[0]
        if error is not None:
            self._drop_transactional()
            if isinstance(error, KafkaError):
                raise _publish_failed(f"{verb} the transaction failed", error) from error
            raise error

    # Plumbing ----------------------------------------------------------------------
    def dimension_of(self, collection: str) -> int | None:
        """The collection's dimension if known: as created in the open transaction, else from the
        lookup (the projection: it has not seen that creation yet) or this producer's creates."""
        created = getattr(self._in_txn, "created", {}) if getattr(self._in_txn, "active", False) else {}
        if collection in created:
            return int(created[collection])
        if self._dimensions is not None:
            dim = self._dimensions(collection)
            if dim is not None:
                return dim
        return self._known_dims.get(collection)

    def _meta(self, collection: str) -> ev.EventMeta:
        return ev.EventMeta.new(collection, self.producer_id)

    def _split_upsert(self, collection: str, ids: tuple[PointId, ...], vectors: np.ndarray,
                      payloads: tuple[ev.Payload | None, ...], named: tuple[ev.NamedRows, ...] = (),
                      sparse: tuple[ev.SparseRows, ...] = ()) -> Iterator[ev.VectorsUpserted]:
        budget = self.settings.max_message_bytes - _FRAMING_BYTES
        start, n = 0, len(ids)
        row_bytes = vectors.shape[1] * 4 + 24
        extra = np.zeros(n, np.int64)  # each point's named vectors, in bytes
        for block in named:
            extra[block.positions] += block.vectors.shape[1] * 4 + 4
        for sblock in sparse:
            extra[sblock.positions] += np.diff(sblock.offsets) * 8 + 8
        while start < n:
            end, size = start, 0
            while end < n and end - start < _MAX_VECTORS_PER_EVENT:
                p = payloads[end]
                item = row_bytes + int(extra[end]) + (len(json.dumps(p)) if p is not None else 0) + len(str(ids[end]))
                if end > start and size + item > budget:
                    break
                size += item
                end += 1
            if size > budget:
                raise InvalidPayload(f"payloads[{start}]: the point alone exceeds the topic's maximum "
                                           f"message size of {self.settings.max_message_bytes} bytes")
            yield ev.VectorsUpserted(self._meta(collection), ids[start:end], vectors[start:end],
                                     payloads[start:end], tuple(_dense_slice(r, start, end) for r in named),
                                     tuple(_sparse_slice(r, start, end) for r in sparse))
            start = end

    def _publish(self, events: list[ev.Event]) -> WriteToken:
        values = [encode(e) for e in events] if self._keyring is None else [self._sealed(e) for e in events]
        if len(values) == 1 or getattr(self._in_txn, "active", False):
            return self._send(values, events)
        # One call's events in one transaction; a call larger than max_transaction_bytes (a bulk
        # load) in several, each visible whole, in order.
        tokens = []
        for run in within(list(zip(values, events, strict=True)), lambda pair: len(pair[0]),
                          self.settings.max_transaction_bytes):
            with self.transaction():
                tokens.append(self._send([v for v, _ in run], [e for _, e in run]))
        return tokens[0] if len(tokens) == 1 else WriteToken.joined(tokens)

    def _sealed(self, event: ev.Event) -> bytes:
        """``event`` encoded and sealed with its collection's newest data key (``schemas.sealing``)."""
        assert self._keyring is not None
        value = encode(event)
        if isinstance(event, _CLEAR_EVENTS):
            return value
        key_id, cipher = self._keyring.sealing_key(event.collection, fresh=isinstance(event, ev.CollectionCreated))
        return sealing.seal(value, event.collection, key_id, cipher)

    def _send(self, values: list[bytes], events: list[ev.Event]) -> WriteToken:
        in_txn = getattr(self._in_txn, "active", False)
        kafka = self._txn_kafka if in_txn and self._txn_kafka is not None else self._kafka
        frame: _Frame | None = self._in_txn.frame if in_txn else None
        headers = self._attribution_headers()
        if frame is not None:
            size = sum(len(v) for v in values)
            if frame.size + size > self.settings.max_transaction_bytes:
                frame.broken = "it passed max_transaction_bytes"
                raise TransactionTooLarge(
                    f"transaction: writing {size} more bytes would pass max_transaction_bytes "
                    f"({self.settings.max_transaction_bytes}; {frame.size} written so far); the transaction "
                    "is aborted, nothing of it is visible: split it into smaller transactions")
            frame.size += size
            headers += framing.record_headers(frame.txn)
        try:
            futures = [kafka.send(self.settings.topic, key=e.collection.encode(), value=v, headers=headers)
                       for e, v in zip(events, values, strict=True)]
            # Wait on each future rather than flush(): kafka-python's flush can raise a spurious
            # "Future not done" when another thread completes the batch concurrently.
            meta = [f.get(timeout=self.settings.publish_timeout) for f in futures]
        except KafkaError as exc:
            if frame is not None:  # a record may land later, on a partition not known to get an end record
                frame.broken = f"a write of it was not acknowledged ({exc})"
            raise _publish_failed("Kafka did not acknowledge the write", exc) from exc
        if frame is not None:
            frame.partitions.update(m.partition for m in meta)
        last = meta[-1]
        return WriteToken(last.partition, last.offset, tuple(m.offset for m in meta))

    def _attribution_headers(self) -> list[tuple[str, bytes]]:
        now = None if self._attribution is None else self._attribution()
        if now is None:
            return who.headers(self.caller, None)
        return who.headers(now.caller or self.caller, now.request_id)

    def flush(self) -> None:
        self._kafka.flush()

    def close(self) -> None:
        self._kafka.close()
        if self._keyring is not None:
            self._keyring.close()
        if self._txn_kafka is not None:
            self._txn_kafka.close()
        if self._verdicts is not None:
            self._verdicts.close()

    def __enter__(self) -> VectorProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


T = TypeVar("T")


def within(items: Sequence[T], cost: Callable[[T], int], budget: int) -> Iterator[list[T]]:
    """``items`` in order, in runs whose costs add up to at most ``budget`` (an item costing
    more than the budget makes a run of its own)."""
    run: list[T] = []
    size = 0
    for item in items:
        item_cost = cost(item)
        if run and size + item_cost > budget:
            yield run
            run, size = [], 0
        run.append(item)
        size += item_cost
    if run:
        yield run


VERDICTS_ENTRY_POINTS = "vectorizer.verdicts"


def default_verdicts(settings: Settings) -> Verdicts:
    """The verdict reader a producer uses when none was given: the one the installed package
    declares under the ``vectorizer.verdicts`` entry point (the projection's catalog,
    ``consumers.verdicts.CatalogVerdicts``). A plugin rather than an import: the producer library
    sits below the consumers and does not import them."""
    found = sorted(entry_points(group=VERDICTS_ENTRY_POINTS), key=lambda e: e.name)
    if not found:
        raise VerdictUnknown(f"no verdict reader is installed (entry point group {VERDICTS_ENTRY_POINTS!r}); "
                             "pass verdicts= to VectorProducer, or install the vectorizer package")
    factory: Callable[[Settings], Verdicts] = found[0].load()
    return factory(settings)


def _publish_failed(what: str, exc: KafkaError) -> PublishFailed:
    if isinstance(exc, ProducerFencedError) or "fenced" in type(exc).__name__.lower():
        return ProducerFenced(f"{what}: another producer with the same transactional id took over ({exc})")
    return PublishFailed(f"{what}: {exc}")


def _canonical(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _checked_blocks(named: Sequence[ev.NamedRows], sparse: Sequence[ev.SparseRows],
                    count: int) -> tuple[tuple[ev.NamedRows, ...], tuple[ev.SparseRows, ...]]:
    """Named vector blocks checked for shape, finiteness and (sparse) unique indices; names once each."""
    seen: set[str] = set()
    blocks: list[ev.NamedRows | ev.SparseRows] = [*named, *sparse]
    for block in blocks:
        if block.name != "":
            check.vector_name(block.name, field=f"vector {block.name!r}")
        if block.name in seen:
            raise ValidationError(f"vector {block.name!r}: given twice")
        seen.add(block.name)
        positions = np.asarray(block.positions)
        if len(positions) and (positions.min() < 0 or positions.max() >= count or np.any(np.diff(positions) <= 0)):
            raise ValidationError(f"vector {block.name!r}: positions must be ascending, unique, within 0..{count - 1}")
    for rows in named:
        check.vectors(rows.vectors, len(rows.positions), None, field=f"vector {rows.name!r}")
    for sblock in sparse:
        if len(sblock.offsets) != len(sblock.positions) + 1 or len(sblock.indices) != len(sblock.values):
            raise ValidationError(f"vector {sblock.name!r}: offsets, indices and values do not match the positions")
        check.sparse_rows(np.asarray(sblock.offsets), np.asarray(sblock.indices), np.asarray(sblock.values),
                          field=sblock.name)
    return tuple(named), tuple(sparse)


def _dense_slice(rows: ev.NamedRows, start: int, end: int) -> ev.NamedRows:
    """The part of ``rows`` for the points ``start..end`` of a batch, positions counted from ``start``."""
    lo, hi = np.searchsorted(rows.positions, [start, end])
    return ev.NamedRows(rows.name, rows.positions[lo:hi] - start, rows.vectors[lo:hi])


def _sparse_slice(rows: ev.SparseRows, start: int, end: int) -> ev.SparseRows:
    lo, hi = np.searchsorted(rows.positions, [start, end])
    a, b = int(rows.offsets[lo]), int(rows.offsets[hi])
    return ev.SparseRows(rows.name, rows.positions[lo:hi] - start, rows.offsets[lo:hi + 1] - a,
                         rows.indices[a:b], rows.values[a:b])
