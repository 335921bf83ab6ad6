"""``projections.waiting.never_wait``: where a read lock or an ``ef`` phase would wait, a marked thread
gets :class:`WouldBlock` at once and holds nothing; unmarked threads wait as before."""

from __future__ import annotations

import threading

import pytest

from projections.collection import RWLock
from projections.index.hnsw import EfGate
from projections.waiting import WouldBlock, never_wait
from tests.helpers import wait_until


def test_a_read_that_would_wait_for_a_writer_raises_and_takes_nothing() -> None:
    lock = RWLock()
    with never_wait(), lock.read():  # free: taken at once
        pass
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with lock.write():
            writing.set()
            release.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    writing.wait(30)
    with pytest.raises(WouldBlock), never_wait(), lock.read():
        pass
    read: list[str] = []

    def reader_thread() -> None:
        with lock.read():
            read.append("done")

    reader = threading.Thread(target=reader_thread)
    reader.start()  # unmarked: waits for the writer
    assert not read
    release.set()
    t.join(30)
    reader.join(30)
    assert read == ["done"]


def test_a_marked_thread_reads_again_what_it_holds() -> None:
    lock = RWLock()
    with lock.write(), never_wait(), lock.read():  # reentrant: no wait, no refusal
        pass


def test_an_ef_phase_that_would_queue_raises_and_leaves_the_queue_alone() -> None:
    efs: list[int] = []
    gate = EfGate(efs.append)
    running, release = threading.Event(), threading.Event()

    def query() -> None:
        with gate.phase(10):
            running.set()
            release.wait(30)

    t = threading.Thread(target=query)
    t.start()
    running.wait(30)
    with never_wait(), gate.phase(10):  # the running phase's ef: joins it
        pass
    with pytest.raises(WouldBlock), never_wait(), gate.phase(20):
        pass
    release.set()
    t.join(30)
    with gate.phase(20):  # nothing left queued by the refused one: starts at once
        pass
    wait_until(lambda: efs == [10, 20], 5, message="the ef set once per phase")
