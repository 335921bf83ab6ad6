"""Transaction framing: the Kafka record headers that make a transaction one visible unit.

Kafka's ``read_committed`` hides a transaction until it commits, but a consumer still receives
a committed transaction's records one poll at a time and cannot see where it ends (the
broker's commit markers are not handed to clients). So a :class:`~producers.VectorProducer`
transaction frames its records itself, in headers only — the event bodies and their Avro
schemas are unchanged:

- every record the transaction writes carries ``vz-txn: <id>`` (32 hex digits, unique);
- before committing, the producer writes one **end record** to every partition the
  transaction wrote to: an empty value with headers ``vz-txn-end: <id>`` and
  ``vz-txn-parts: <partition>,<partition>,...`` (every partition that holds a part of it).

A projector that meets a framed record holds it, and the records after it on that partition,
until it holds the end record of every part; then it applies them all as one unit (see
``consumers.units``). Records without these headers — everything a producer wrote before
framing existed, or a plain Kafka producer's records — are applied one by one as before.
The order in which records are applied never changes, only when readers see them, so a log
replays to the same state with or without framing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TXN = "vz-txn"
TXN_END = "vz-txn-end"
TXN_PARTS = "vz-txn-parts"


@dataclass(frozen=True)
class Frame:
    """What a record's headers say about its transaction."""

    txn: str
    end: bool = False              # the transaction's end record on this partition (no event)
    parts: tuple[int, ...] = ()    # on an end record: every partition the transaction wrote to


def record_headers(txn: str) -> list[tuple[str, bytes]]:
    """Headers of a data record written inside transaction ``txn``."""
    return [(TXN, txn.encode())]


def end_headers(txn: str, parts: Iterable[int]) -> list[tuple[str, bytes]]:
    """Headers of transaction ``txn``'s end record (one per partition in ``parts``)."""
    return [(TXN_END, txn.encode()), (TXN_PARTS, ",".join(str(p) for p in sorted(set(parts))).encode())]


def frame_of(headers: Sequence[tuple[str, bytes | None]] | None) -> Frame | None:
    """The framing a record carries, or None for an unframed record (applied on its own).

    An end record whose parts list does not parse names only its own transaction: it is
    treated as covering no other partition (so it never waits for one)."""
    if not headers:
        return None
    txn = end = parts = None
    for key, value in headers:
        if key == TXN:
            txn = value
        elif key == TXN_END:
            end = value
        elif key == TXN_PARTS:
            parts = value
    if end is not None:
        return Frame(end.decode("ascii", "replace"), True, _parts(parts))
    if txn is not None:
        return Frame(txn.decode("ascii", "replace"))
    return None


def is_end(headers: Sequence[tuple[str, bytes | None]] | None) -> bool:
    """Whether a record is a transaction's end record (framing, not an event)."""
    return bool(headers) and any(key == TXN_END for key, _ in headers)  # type: ignore[union-attr]


def _parts(raw: bytes | None) -> tuple[int, ...]:
    if not raw:
        return ()
    try:
        return tuple(sorted({int(p) for p in raw.decode("ascii").split(",") if p}))
    except (UnicodeDecodeError, ValueError):
        return ()
