"""Which held records can be applied now, as one unit (see ``schemas.framing``).

A partition starts holding records at its first framed record (one written inside a
transaction) and holds every record after it, in offset order, framed or not. A prefix of
what a partition holds is *closed* when every transaction begun in it has its end record in
it too. Closed prefixes of several partitions form a unit when every transaction in them has
all its parts (the partitions its end records name) in the unit. :meth:`Units.take` returns
the longest such prefixes, which the projector applies together and publishes once: a reader
sees all of a transaction, or none of it.

Other producers' records that fall between a transaction's records on its partition are
held with it and become visible with it: the order of records never changes.

Holding is bounded: a partition that needs no more of its own records (:meth:`Units.awaited`)
is not fetched while it waits for another's part, and :meth:`Units.take_all` hands back what
partitions hold (applied as before, one record after another) when the held bytes pass the
projector's limit or a partition finds no whole prefix in time; :attr:`Units.given_up` remembers those
transactions, so a later part of one does not wait for the parts already applied.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.framing import frame_of

_GIVEN_UP_KEPT = 10_000


@dataclass
class _Txn:
    first: int                  # index of its first record in the partition's held records
    end: int | None = None      # index of its end record here, once held
    parts: tuple[int, ...] = ()


@dataclass
class _Held:
    records: list[Any] = field(default_factory=list)
    size: int = 0
    open: set[str] = field(default_factory=set)      # begun here, end record not held yet
    closed: list[int] = field(default_factory=list)  # prefix lengths at which nothing is open
    txns: dict[str, _Txn] = field(default_factory=dict)
    since: float = 0.0  # monotonic time the oldest held record arrived


class Units:
    """Held records per partition; not thread-safe (the projector's thread owns it)."""

    def __init__(self, partitions: Iterable[int] | None = None) -> None:
        self._held: dict[int, _Held] = {}
        # The partitions read: an end record naming another (a foreign writer, a partition added
        # since) is not waited for.
        self._partitions = None if partitions is None else frozenset(partitions)
        self.given_up: dict[str, None] = {}  # insertion-ordered set

    def holds(self, partition: int) -> bool:
        return partition in self._held

    @property
    def size(self) -> int:
        """Bytes of record values held, all partitions."""
        return sum(h.size for h in self._held.values())

    def first_offset(self, partition: int) -> int | None:
        held = self._held.get(partition)
        return None if held is None else held.records[0].offset

    def held_since(self) -> dict[int, float]:
        """Per holding partition: since when it has held records without any being applied."""
        return {p: h.since for p, h in self._held.items()}

    def add(self, partition: int, record: Any) -> None:
        """Hold ``record`` (the next record of ``partition``); call only for a framed record or
        while the partition :meth:`holds` records."""
        held = self._held.get(partition)
        if held is None:
            held = self._held[partition] = _Held(since=time.monotonic())
        frame = frame_of(record.headers)
        index = len(held.records)
        held.records.append(record)
        held.size += len(record.value or b"")
        if frame is not None:
            txn = held.txns.get(frame.txn)
            if txn is None:
                txn = held.txns[frame.txn] = _Txn(index)
            if frame.end:
                parts = frame.parts if self._partitions is None else tuple(
                    q for q in frame.parts if q in self._partitions)
                txn.end, txn.parts = index, parts
                held.open.discard(frame.txn)
            elif txn.end is None:
                held.open.add(frame.txn)
        if not held.open:
            held.closed.append(index + 1)

    def take(self) -> dict[int, list[Any]]:
        """The records that can be applied now, per partition (offset order), as one unit;
        empty when none can."""
        cut = {p: (h.closed[-1] if h.closed else 0) for p, h in self._held.items()}
        changed = True
        while changed:
            changed = False
            for p, held in self._held.items():
                for txn_id, txn in held.txns.items():
                    if txn.first >= cut[p] or txn_id in self.given_up:
                        continue
                    if all(self._complete(q, txn_id, cut) for q in txn.parts if q != p):
                        continue
                    i = bisect.bisect_right(held.closed, txn.first)  # closed prefixes that end before it
                    cut[p] = held.closed[i - 1] if i else 0
                    changed = True
        return {p: self._drop(p, n) for p, n in cut.items() if n}

    def _complete(self, partition: int, txn_id: str, cut: dict[int, int]) -> bool:
        held = self._held.get(partition)
        txn = None if held is None else held.txns.get(txn_id)
        return txn is not None and txn.end is not None and txn.end < cut[partition]

    def awaited(self) -> set[int]:
        """Partitions whose next records a held transaction still needs: those with a
        transaction begun and not ended, and those a known end record names that do not hold
        that transaction's end. A partition that holds records but is not awaited needs no
        more of its own records to be applied (the projector pauses fetching it)."""
        need = set()
        for p, held in self._held.items():
            if held.open:
                need.add(p)
            for txn_id, txn in held.txns.items():
                if txn.end is None or txn_id in self.given_up:
                    continue
                need.update(q for q in txn.parts if q != p and not self._holds_end(q, txn_id))
        return need

    def _holds_end(self, partition: int, txn_id: str) -> bool:
        held = self._held.get(partition)
        txn = None if held is None else held.txns.get(txn_id)
        return txn is not None and txn.end is not None

    def take_all(self, partitions: Iterable[int] | None = None) -> dict[int, list[Any]]:
        """Everything held (by ``partitions``, default all): its transactions stop waiting for
        their other parts, and parts of them still held elsewhere stop waiting for these."""
        chosen = sorted(self._held if partitions is None else set(partitions) & set(self._held))
        for p in chosen:
            self.given_up.update(dict.fromkeys(self._held[p].txns))
        while len(self.given_up) > _GIVEN_UP_KEPT:  # oldest first: a part that late is not waited for anyway
            del self.given_up[next(iter(self.given_up))]
        return {p: self._held.pop(p).records for p in chosen}

    def _drop(self, partition: int, n: int) -> list[Any]:
        held = self._held[partition]
        taken = held.records[:n]
        if n == len(held.records):
            del self._held[partition]
        else:
            held.records = held.records[n:]
            held.size -= sum(len(r.value or b"") for r in taken)
            held.closed = [c - n for c in held.closed if c > n]
            held.txns = {t: _Txn(x.first - n, None if x.end is None else x.end - n, x.parts)
                         for t, x in held.txns.items() if x.first >= n}
            held.since = time.monotonic()
        return taken
