"""``EfGate``: queries at one ``ef`` run together, never alongside a query at another ``ef``."""

from __future__ import annotations

import threading
import time

from projections.index.hnsw import EfGate


def test_same_ef_runs_in_parallel_other_ef_waits_and_set_ef_happens_only_when_idle() -> None:
    running: list[int] = []
    log: list[tuple[str, int]] = []
    lock = threading.Lock()

    def set_ef(ef: int) -> None:
        with lock:
            assert not running, f"set_ef({ef}) while queries at {running} run"
            log.append(("set", ef))

    gate = EfGate(set_ef)
    release = threading.Event()
    peak: dict[int, int] = {}

    def query(ef: int) -> None:
        with gate.phase(ef):
            with lock:
                assert all(r == ef for r in running), f"ef {ef} ran alongside {running}"
                running.append(ef)
                peak[ef] = max(peak.get(ef, 0), len(running))
            release.wait(10)
            time.sleep(0.01)
            with lock:
                running.remove(ef)

    first = [threading.Thread(target=query, args=(400,)) for _ in range(3)]
    for t in first:
        t.start()
    time.sleep(0.1)
    later = [threading.Thread(target=query, args=(ef,)) for ef in (1, 1, 400, 1)]
    for t in later:
        t.start()
        time.sleep(0.02)
    release.set()
    for t in first + later:
        t.join(10)
        assert not t.is_alive()
    assert peak[400] == 3 and peak[1] >= 2  # the queued ef=1 queries ran as one phase
    assert [ef for _, ef in log] == [400, 1, 400, 1]  # phases in arrival order
