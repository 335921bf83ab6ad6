"""An open transaction holding ``read_committed`` readers back: the last stable offset (LSO).

A ``read_committed`` reader never reads past a partition's LSO, the first offset of the
oldest transaction still open on it. While a producer is inside a transaction the LSO stays
below the high watermark (what ``read_uncommitted`` sees) and everything written after the
transaction's first record waits, committed or not. A producer killed inside one holds the
LSO until the broker aborts the transaction: at most the producer's transaction timeout
(``VECTORIZER_TRANSACTION_TIMEOUT``) plus the broker's check interval (1 s,
``infra/kafka/server.properties``). A live transaction holds it for as long as it runs;
only a hold that lasts is a stall.

Two ways to measure, one result type (:class:`HeldLso`, per partition, only for partitions
whose LSO is held back):

- :func:`observe`: for a running projector, from its own ``read_committed`` consumer
  (``end_offsets`` is the LSO, the high watermark comes with every fetch); ``since`` is when
  this process first saw the LSO held at that offset, carried from one call to the next.
- :func:`read`: one look from a bootstrap address (``vectorizer status``); ``since`` is the
  timestamp of the first record held back (the open transaction's first record on that
  partition, by the writer's clock).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from infra.kafka import clients
from infra.settings import Settings


@dataclass(frozen=True)
class HeldLso:
    """A partition whose last stable offset is below its high watermark."""

    partition: int
    stable: int          # the LSO: the read_committed end offset, where readers wait
    high_watermark: int  # the read_uncommitted end offset
    since: float         # wall-clock seconds (time.time()) since which the LSO is held at ``stable``

    @property
    def open_records(self) -> int:
        """Records (of open transactions and after them) that readers cannot see yet."""
        return self.high_watermark - self.stable

    def held_seconds(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.since)

    def as_dict(self, now: float | None = None) -> dict[str, float | int]:
        return {"last_stable_offset": self.stable, "high_watermark": self.high_watermark,
                "open_transaction_records": self.open_records,
                "held_seconds": round(self.held_seconds(now), 1)}


def held_back(stable: Mapping[int, int], high: Mapping[int, int], previous: Mapping[int, HeldLso],
              now: float) -> dict[int, HeldLso]:
    """The partitions whose LSO is below the high watermark; a hold already in ``previous`` at
    the same LSO keeps its ``since``, a new one starts at ``now``."""
    held = {}
    for p, lso in stable.items():
        hw = high.get(p)
        if hw is None or hw <= lso:
            continue
        before = previous.get(p)
        since = before.since if before is not None and before.stable == lso else now
        held[p] = HeldLso(p, lso, hw, since)
    return held


def observe(consumer: KafkaConsumer, topic: str, stable: Mapping[int, int],
            previous: Mapping[int, HeldLso], now: float | None = None) -> dict[int, HeldLso]:
    """Held partitions for a ``read_committed`` ``consumer`` that has partitions of ``topic``
    assigned and just read ``stable`` (its ``end_offsets``). No request: the high watermark is
    the one of the consumer's last fetch (``None`` before the first, then not held)."""
    high = {}
    for p in stable:
        hw = consumer.highwater(TopicPartition(topic, p))
        if hw is not None:
            high[p] = hw
    return held_back(stable, high, previous, time.time() if now is None else now)


def read(settings: Settings, partitions: Iterable[int], timeout: float = 10.0) -> dict[int, HeldLso]:
    """One look at the held partitions of the events topic, with clients of its own; ``since`` is
    the first held-back record's timestamp (now if it could not be read within ``timeout``)."""
    topic = settings.topic
    tps = [TopicPartition(topic, p) for p in partitions]
    if not tps:
        return {}
    committed = clients.consumer(settings, "stall")
    try:
        uncommitted = clients.consumer(settings, "stall", committed=False, max_poll_records=1)
    except BaseException:
        committed.close()
        raise
    try:
        # The high watermark first: an LSO read after it is never above it, so a transaction
        # that commits in between is not reported as a hold.
        high = {tp.partition: o for tp, o in uncommitted.end_offsets(tps).items()}
        stable = {tp.partition: o for tp, o in committed.end_offsets(tps).items()}
        now = time.time()
        held = held_back(stable, high, {}, now)
        deadline = time.monotonic() + timeout
        for p, h in held.items():
            tp = TopicPartition(topic, p)
            uncommitted.assign([tp])
            uncommitted.seek(tp, h.stable)
            while time.monotonic() < deadline:
                records = uncommitted.poll(timeout_ms=200).get(tp, [])
                if records:
                    held[p] = HeldLso(p, h.stable, h.high_watermark, min(now, records[0].timestamp / 1000))
                    break
    finally:
        committed.close()
        uncommitted.close()
    return held
