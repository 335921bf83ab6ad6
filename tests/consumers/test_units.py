"""Which held records form a unit (``consumers.units``): pure logic, records built in memory.

Every case checks the rule readers rely on: a unit never holds part of a transaction (a
transaction's records on every partition it wrote to, up to its end records), the order of
records on a partition never changes, and nothing is held longer than needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.units import Units
from schemas import framing


@dataclass
class Rec:
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    value: bytes = b"x" * 10
    key: bytes | None = None


class Log:
    """Records per partition, with offsets assigned in order."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def rec(self, partition: int, txn: str | None = None, end: tuple[int, ...] | None = None) -> tuple[int, Any]:
        offset = self.next.get(partition, 0)
        self.next[partition] = offset + 1
        if end is not None:
            assert txn is not None
            return partition, Rec(offset, framing.end_headers(txn, end), b"")
        return partition, Rec(offset, framing.record_headers(txn) if txn else [])


def offsets(taken: dict[int, list[Any]]) -> dict[int, list[int]]:
    return {p: [r.offset for r in records] for p, records in taken.items()}


def test_a_single_partition_transaction_is_held_until_its_end_record() -> None:
    log, units = Log(), Units()
    for p, rec in [log.rec(0, "a"), log.rec(0, "a")]:
        units.add(p, rec)
    assert units.take() == {}
    assert units.holds(0) and units.first_offset(0) == 0
    units.add(*log.rec(0, "a", end=(0,)))
    assert offsets(units.take()) == {0: [0, 1, 2]}
    assert not units.holds(0) and units.take() == {}


def test_records_of_other_writers_between_a_transactions_records_become_visible_with_it() -> None:
    log, units = Log(), Units()
    for p, rec in [log.rec(0, "a"), log.rec(0), log.rec(0, "a"), log.rec(0)]:
        units.add(p, rec)
    assert units.take() == {}
    units.add(*log.rec(0, "a", end=(0,)))
    units.add(*log.rec(0))  # after the end: closed, applied too
    assert offsets(units.take()) == {0: [0, 1, 2, 3, 4, 5]}


def test_a_closed_prefix_is_applied_while_a_later_transaction_is_still_open() -> None:
    log, units = Log(), Units()
    for p, rec in [log.rec(0, "a"), log.rec(0, "a", end=(0,)), log.rec(0, "b"), log.rec(0, "b")]:
        units.add(p, rec)
    assert offsets(units.take()) == {0: [0, 1]}
    assert units.first_offset(0) == 2 and units.take() == {}
    units.add(*log.rec(0, "b", end=(0,)))
    assert offsets(units.take()) == {0: [2, 3, 4]}


def test_a_transaction_across_partitions_waits_for_every_part() -> None:
    log, units = Log(), Units()
    units.add(*log.rec(0, "a"))
    units.add(*log.rec(0, "a", end=(0, 1)))
    assert units.take() == {}  # partition 1's part not held yet
    units.add(*log.rec(1, "a"))
    assert units.take() == {}  # nor its end record
    units.add(*log.rec(1, "a", end=(0, 1)))
    assert offsets(units.take()) == {0: [0, 1], 1: [0, 1]}


def test_crossed_transactions_on_two_partitions_are_applied_together() -> None:
    """a then b on partition 0, b then a on partition 1: neither can go first alone."""
    log, units = Log(), Units()
    for p, rec in [log.rec(0, "a"), log.rec(0, "a", end=(0, 1)), log.rec(0, "b"), log.rec(0, "b", end=(0, 1)),
                   log.rec(1, "b"), log.rec(1, "b", end=(0, 1))]:
        units.add(p, rec)
    assert units.take() == {}  # a's part on 1 is missing, and b on 1 comes before it
    units.add(*log.rec(1, "a"))
    units.add(*log.rec(1, "a", end=(0, 1)))
    assert offsets(units.take()) == {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}


def test_a_partition_whose_part_is_whole_still_waits_behind_a_transaction_of_another() -> None:
    log, units = Log(), Units()
    units.add(*log.rec(0, "a"))
    units.add(*log.rec(0, "a", end=(0, 1)))
    units.add(*log.rec(0))  # closed, but behind a: must not overtake it
    assert units.take() == {}
    assert units.first_offset(0) == 0


def test_take_all_gives_up_on_the_parts_it_applied() -> None:
    log, units = Log(), Units()
    units.add(*log.rec(0, "a"))
    units.add(*log.rec(0, "a", end=(0, 1)))
    assert offsets(units.take_all()) == {0: [0, 1]}
    assert "a" in units.given_up and units.size == 0
    units.add(*log.rec(1, "a"))
    units.add(*log.rec(1, "a", end=(0, 1)))
    assert offsets(units.take()) == {1: [0, 1]}  # partition 0's part went already: not awaited


def test_sizes_are_counted_and_released() -> None:
    log, units = Log(), Units()
    units.add(*log.rec(0, "a"))
    units.add(*log.rec(0, "a"))
    assert units.size == 20
    units.add(*log.rec(0, "a", end=(0,)))
    units.take()
    assert units.size == 0 and units.held_since() == {}


# Any interleaving of transactions over up to three partitions: take() only ever returns
# whole transactions, in offset order, and once everything is written nothing stays held.
@st.composite
def _writes(draw: st.DrawFn) -> list[tuple[int, Rec]]:
    log = Log()
    n = draw(st.integers(1, 5))
    plans: list[list[tuple[int, str | None, tuple[int, ...] | None]]] = []
    for t in range(n):
        parts = tuple(sorted(draw(st.sets(st.integers(0, 2), min_size=1, max_size=3))))
        steps: list[tuple[int, str | None, tuple[int, ...] | None]] = []
        for q in parts:
            steps += [(q, f"t{t}", None)] * draw(st.integers(0, 3))
        steps = draw(st.permutations(steps))
        plans.append(steps + [(q, f"t{t}", parts) for q in parts])  # end records last (before commit)
    plans.append([(draw(st.integers(0, 2)), None, None) for _ in range(draw(st.integers(0, 4)))])
    cursors = [0] * len(plans)
    out: list[tuple[int, Rec]] = []
    while any(c < len(plan) for c, plan in zip(cursors, plans, strict=True)):
        i = draw(st.sampled_from([i for i, plan in enumerate(plans) if cursors[i] < len(plan)]))
        q, txn, end = plans[i][cursors[i]]
        cursors[i] += 1
        out.append(log.rec(q, txn, end))
    return out


@given(_writes(), st.randoms(use_true_random=False))
def test_any_interleaving_yields_only_whole_transactions(writes: list[tuple[int, Rec]], rnd: Any) -> None:
    units = Units()
    members: dict[str, set[tuple[int, int]]] = {}
    for p, rec in writes:
        frame = framing.frame_of(rec.headers)
        if frame is not None:
            members.setdefault(frame.txn, set()).add((p, rec.offset))
    seen: dict[int, list[int]] = {}
    for p, rec in writes:
        units.add(p, rec)
        if rnd.random() < 0.5:
            continue
        taken = units.take()
        got = {(q, r.offset) for q, records in taken.items() for r in records}
        for txn, recs in members.items():
            assert recs <= got or not recs & got, f"{txn} taken in part"
        for q, records in taken.items():
            seen.setdefault(q, []).extend(r.offset for r in records)
    for q, records in units.take().items():
        seen.setdefault(q, []).extend(r.offset for r in records)
    assert units.size == 0 and not any(units.holds(q) for q in range(3))
    for got_offsets in seen.values():
        assert got_offsets == sorted(got_offsets)  # order never changes
    held_ever = {q for q, rec in writes if framing.frame_of(rec.headers) is not None}
    for q in held_ever:
        assert seen.get(q), f"partition {q} never released"


def test_an_unframed_end_parts_list_that_does_not_parse_covers_no_other_partition() -> None:
    frame = framing.frame_of([(framing.TXN_END, b"a"), (framing.TXN_PARTS, b"x,1")])
    assert frame == framing.Frame("a", True, ())


@pytest.mark.parametrize("headers", [None, [], [("other", b"1")]])
def test_records_without_framing_are_not_framed(headers: Any) -> None:
    assert framing.frame_of(headers) is None and not framing.is_end(headers)


def test_awaited_names_the_partitions_whose_records_are_still_needed() -> None:
    log, units = Log(), Units()
    units.add(*log.rec(0, "a"))
    assert units.awaited() == {0}  # a is open on 0: its end is still to come
    units.add(*log.rec(0, "a", end=(0, 1)))
    assert units.awaited() == {1}  # 0 needs nothing more of its own; 1 must bring a's part
    units.add(*log.rec(1, "c"))
    assert units.awaited() == {1}
    units.add(*log.rec(1, "a"))
    units.add(*log.rec(1, "a", end=(0, 1)))
    assert units.awaited() == {1}  # c is still open on 1
    units.add(*log.rec(1, "c", end=(0, 1)))
    assert units.awaited() == {0}  # c's part on 0 comes after a's end there: 0 must be read again
    units.add(*log.rec(0, "c"))
    units.add(*log.rec(0, "c", end=(0, 1)))
    assert units.awaited() == set()
    assert offsets(units.take()) == {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}


def test_an_end_record_naming_a_partition_not_read_does_not_wait_for_it() -> None:
    log, units = Log(), Units(partitions=[0, 1])
    units.add(*log.rec(0, "a"))
    units.add(*log.rec(0, "a", end=(0, 7)))  # partition 7 is not read (another topic layout, a foreign writer)
    assert units.awaited() == set()
    assert offsets(units.take()) == {0: [0, 1]}


def test_take_all_of_some_partitions_leaves_the_others_held_and_unblocks_their_parts() -> None:
    log, units = Log(), Units()
    units.add(*log.rec(0, "a"))
    units.add(*log.rec(0, "a", end=(0, 1)))
    units.add(*log.rec(2, "b"))  # b never ends here
    assert offsets(units.take_all([2])) == {2: [0]}
    assert units.holds(0) and not units.holds(2)
    assert units.take() == {}  # a still waits for partition 1
    units.add(*log.rec(1, "a"))
    units.add(*log.rec(1, "a", end=(0, 1)))
    assert offsets(units.take()) == {0: [0, 1], 1: [0, 1]}
