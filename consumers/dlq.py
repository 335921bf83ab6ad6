"""The dead-letter topic ``<topic>.dlq``: records that fail to decode or to apply.

The original key and value are kept byte for byte; headers say why and where from:
``vectorizer.reason`` (a short code), ``vectorizer.detail`` (the message),
``vectorizer.source`` (``topic/partition/offset``), and since this version
``vectorizer.status`` (the HTTP status of the same mistake caught up front),
``vectorizer.producer`` (the event's producer id, when it decoded) and
``vectorizer.time`` (when it was dead-lettered, RFC 3339). :meth:`DeadLetters.send`
returns once Kafka acknowledged every record, so the projector may then commit past them.

Delivery: a projector sends a record's letter only if the DLQ does not already hold one for
that source record (:meth:`DeadLetters.published` reads the DLQ's tail at start: the letters
seen there, and everything older than the tail when the tail did not reach the beginning), so
a replay or a new replica of the same topic does not re-send the letters the first one sent.
A crash between sending and the catalog commit may still re-send some: readers
deduplicate by ``vectorizer.source`` (:func:`read_letters` does).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from consumers.errors import DlqReadTimeout
from infra.kafka import clients
from infra.settings import Settings
from schemas.codec import decode
from schemas.errors import DecodeError

log = logging.getLogger(__name__)

_TAIL_RECORDS = 1000  # read back per DLQ partition to find what was already dead-lettered
_TAIL_SECONDS = 15.0  # at most this long; past it nothing is taken as sent (re-sending is tolerated)
_LIST_SECONDS = 120.0  # reading the whole DLQ back for ``vectorizer dlq``


@dataclass(frozen=True)
class SentLetters:
    """What the DLQ already holds, per source partition: the source offsets seen in its tail,
    and below which offset every letter is taken as sent (the tail did not reach that far back)."""

    seen: dict[int, frozenset[int]] = field(default_factory=dict)
    sent_below: dict[int, int] = field(default_factory=dict)

    def holds(self, partition: int, offset: int) -> bool:
        return offset in self.seen.get(partition, frozenset()) or offset < self.sent_below.get(partition, -1)


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    producer_id: str | None = None
    status: int = 400


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter read back from the DLQ topic."""

    source_partition: int
    source_offset: int
    collection: str | None
    reason: str
    detail: str
    status: int | None
    producer_id: str | None
    time: str | None  # when it was dead-lettered; None for letters written before that header existed
    value: bytes | None

    def row(self) -> dict[str, Any]:
        """The letter as ``vectorizer dlq list --json`` and ``GET /vectorizer/dead_letters`` show it."""
        return {"offset": f"{self.source_partition}:{self.source_offset}", "collection": self.collection,
                "reason": self.reason, "status": self.status, "producer": self.producer_id, "time": self.time,
                "detail": self.detail}


class DeadLetters:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: KafkaProducer | None = None
        self.count = 0

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        if self._producer is None:
            self._producer = clients.producer(self.settings, f"dlq-{self.settings.projection}",
                                              enable_idempotence=True,
                                              max_request_size=self.settings.max_message_bytes + 65536)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").encode()
        futures = []
        for letter in letters:
            log.warning("dead-lettering %s/%d/%d: %s: %s", self.settings.topic, letter.partition, letter.offset,
                        letter.reason, letter.detail[:500])
            headers = [("vectorizer.reason", letter.reason.encode()),
                       ("vectorizer.detail", letter.detail[:4000].encode()),
                       ("vectorizer.source", f"{self.settings.topic}/{letter.partition}/{letter.offset}".encode()),
                       ("vectorizer.status", str(letter.status).encode()),
                       ("vectorizer.time", now)]
            if letter.producer_id is not None:
                headers.append(("vectorizer.producer", letter.producer_id.encode()))
            futures.append(self._producer.send(self.settings.dlq_topic, key=letter.key, value=letter.value,
                                               headers=headers))
        for f in futures:
            f.get(timeout=60)
        self.count += len(letters)

    def published(self, partitions: Iterable[int]) -> SentLetters:
        """The letters the DLQ already holds for these source partitions of the events topic.

        Reads at most the last ``_TAIL_RECORDS`` of each DLQ partition, within ``_TAIL_SECONDS``.
        A DLQ that is missing, unreachable or too slow answers "nothing sent" (letters are then
        re-sent, which readers tolerate); a letter is never taken as sent unless seen, or older
        than a tail that stopped short of the DLQ's beginning.
        """
        wanted = set(partitions)
        seen: dict[int, set[int]] = {}
        oldest: dict[int, int] = {}
        truncated = [False]
        try:
            for letter in _read(self.settings, tail=_TAIL_RECORDS, seconds=_TAIL_SECONDS, truncated=truncated):
                p = letter.source_partition
                if p in wanted:
                    seen.setdefault(p, set()).add(letter.source_offset)
                    oldest[p] = min(oldest.get(p, letter.source_offset), letter.source_offset)
        except (KafkaError, DlqReadTimeout) as exc:
            log.warning("could not read the dead-letter topic back (%s); earlier letters may be re-sent", exc)
            return SentLetters()
        return SentLetters({p: frozenset(o) for p, o in seen.items()}, dict(oldest) if truncated[0] else {})

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()


def read_letters(settings: Settings) -> list[StoredLetter]:
    """Every dead letter of ``settings.topic``, one per source record (the first sent), in source order."""
    seen: dict[tuple[int, int], StoredLetter] = {}
    for letter in _read(settings, tail=None, seconds=_LIST_SECONDS):
        seen.setdefault((letter.source_partition, letter.source_offset), letter)
    return [seen[k] for k in sorted(seen)]


def recent_letters(settings: Settings, limit: int, seconds: float = 30.0) -> tuple[list[StoredLetter], bool]:
    """The newest ``limit`` dead letters or fewer (newest first), and whether older ones were left unread.

    Reads only the last ``limit`` records of each DLQ partition, so its cost is bounded by
    ``limit``, never by how many letters the topic holds."""
    truncated = [False]
    seen: dict[tuple[int, int], StoredLetter] = {}
    for letter in _read(settings, tail=limit, seconds=seconds, truncated=truncated):
        seen.setdefault((letter.source_partition, letter.source_offset), letter)
    newest = sorted(seen.values(), key=lambda letter: (letter.time or "", letter.source_offset), reverse=True)
    return newest[:limit], truncated[0] or len(newest) > limit


def _read(settings: Settings, tail: int | None, seconds: float,
          truncated: list[bool] | None = None) -> Iterable[StoredLetter]:
    """The DLQ's letters for ``settings.topic`` up to its current end (``tail``: only the last N per
    partition; ``truncated[0]`` is set when that left older letters unread). Raises
    :class:`DlqReadTimeout` if the end is not reached within ``seconds``."""
    deadline = time.monotonic() + seconds
    consumer = clients.consumer(settings, "dlq-reader", consumer_timeout_ms=1000, request_timeout_ms=10_000)
    try:
        found = consumer.partitions_for_topic(settings.dlq_topic)
        if not found:
            return
        tps = [TopicPartition(settings.dlq_topic, p) for p in sorted(found)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        remaining = {}
        for tp in tps:
            start = starts[tp] if tail is None else max(starts[tp], ends[tp] - tail)
            if truncated is not None and start > starts[tp]:
                truncated[0] = True
            consumer.seek(tp, start)
            if ends[tp] > start:
                remaining[tp] = ends[tp]
        while remaining:
            if time.monotonic() > deadline:
                raise DlqReadTimeout(f"{settings.dlq_topic} not read to its end within {seconds:.0f}s")
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= remaining.get(tp, -1):
                        continue
                    letter = _stored(settings, rec)
                    if letter is not None:
                        yield letter
            for tp in list(remaining):
                if consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
    finally:
        consumer.close()


def _stored(settings: Settings, rec: object) -> StoredLetter | None:
    headers = {k: v for k, v in (getattr(rec, "headers", None) or [])}
    source = headers.get("vectorizer.source", b"").decode("utf-8", "replace")
    topic, _, rest = source.rpartition("/")
    topic, _, part = topic.rpartition("/")
    if topic != settings.topic or not part.isdigit() or not rest.isdigit():
        return None  # another topic's letter, or not one of ours

    def text(name: str) -> str | None:
        raw = headers.get(name)
        return None if raw is None else raw.decode("utf-8", "replace")

    key = getattr(rec, "key", None)
    producer = text("vectorizer.producer")
    value = getattr(rec, "value", None)
    if producer is None and value is not None:  # a letter written before the header: read it off the event
        producer = _producer_of(value)
    status = text("vectorizer.status")
    return StoredLetter(int(part), int(rest), None if key is None else key.decode("utf-8", "replace"),
                        text("vectorizer.reason") or "unknown", text("vectorizer.detail") or "",
                        int(status) if status and status.isdigit() else None, producer, text("vectorizer.time"),
                        value)


def _producer_of(value: bytes) -> str | None:
    try:
        return decode(value).meta.producer_id
    except (DecodeError, AttributeError):
        return None
