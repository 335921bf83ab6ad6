"""kill -9 of the projector at random points of a 50,000-vector ingest, 20 times.

Half the kill points are random moments; the other half wait until a snapshot is being
written (its ``.tmp-*`` folder exists) and kill then. Invariant: after the last crash,
recovery (snapshot + log) yields exactly the state a fresh replay of the whole topic
builds: same ids, payloads, vectors, catalog rows, exact search results; and it has
applied every acknowledged write.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from infra.settings import Settings
from producers import VectorProducer
from projections.catalog.store import Catalog
from tests import reliability
from tests.helpers import catalog_of, exact_top, read_topic, running_projector, state_of, wait_until

ROOT = Path(__file__).resolve().parents[2]
N, DIM, BATCH = 50_000, 16, 250
SEGMENT = 2048


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"VECTORIZER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "VECTORIZER_TOPIC": settings.topic,
                "VECTORIZER_DATA_DIR": str(settings.data_dir), "VECTORIZER_SNAPSHOT_EVERY_EVENTS": "20",
                "VECTORIZER_POLL_MAX_RECORDS": "8", "VECTORIZER_CATALOG_URL": "",
                "VECTORIZER_SEGMENT_BYTES": str(SEGMENT * DIM * 4)})  # 2,048 labels: ~25 segments
    return env


def _ingest(settings: Settings, vectors: np.ndarray, lo: int, hi: int, acked: list[int],
            errors: list[BaseException]) -> None:
    """Publish ``[lo, hi)`` with deletes, re-upserts and payload changes mixed in; keep every acknowledged offset."""
    try:
        _publish(settings, vectors, lo, hi, acked)
    except BaseException as exc:  # noqa: BLE001 - surfaced by the test's thread
        errors.append(exc)


def _publish(settings: Settings, vectors: np.ndarray, lo: int, hi: int, acked: list[int]) -> None:
    rng = random.Random(lo)
    with VectorProducer(settings, producer_id=f"ingest-{lo}") as p:
        for s in range(lo, hi, BATCH):
            acked.append(p.upsert("crash", list(range(s, s + BATCH)), vectors[s:s + BATCH],
                     [{"i": i, "batch": s // BATCH} for i in range(s, s + BATCH)]).offset)
            if s and rng.random() < 0.2:
                victims = rng.sample(range(s), 20)
                acked.append(p.delete("crash", victims).offset)
                acked.append(p.upsert("crash", victims[:5], vectors[victims[:5]] * 2,
                                      [{"again": v} for v in victims[:5]]).offset)
                acked.append(p.set_payload("crash", victims[5:10], {"touched": s}).offset)


def _writing(settings: Settings, stale: set[str]) -> bool:
    """Whether a snapshot is being written now (a ``.tmp-*`` folder not left by an earlier kill)."""
    return any(p.name not in stale for p in settings.snapshot_dir.glob(".tmp-*"))


@pytest.mark.timeout(1500)
def test_kill_9_during_ingest_and_snapshots_then_state_equals_fresh_replay(settings: Settings) -> None:
    vectors = np.random.default_rng(0).random((N, DIM), dtype=np.float32)
    with VectorProducer(settings) as p:
        p.create_collection("crash", DIM, "l2", m=8, ef_construction=48)
    catalog = Catalog(settings.resolved_catalog_url, settings.projection, settings.topic)
    rng = random.Random(11)
    rounds = 20
    share = N // rounds
    acked: list[int] = []
    errors: list[BaseException] = []
    during_snapshot = 0
    for r in range(rounds):
        # This round's share is published while a fresh projector consumes; it dies mid-work.
        ingest = threading.Thread(target=_ingest, args=(settings, vectors, r * share, (r + 1) * share, acked, errors))
        ingest.start()
        previous = catalog.positions().get(0, -1)
        stale = {p.name for p in settings.snapshot_dir.glob(".tmp-*")}  # left by earlier kills
        log_file = settings.data_dir.parent / f"projector-{r}.log"
        with open(log_file, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "vectorizer", "project"], cwd=ROOT,
                                    env=_env(settings), stdout=log, stderr=subprocess.STDOUT)
        try:
            def progressed(proc: subprocess.Popen[bytes] = proc, previous: int = previous) -> bool:
                return catalog.positions().get(0, -1) > previous or proc.poll() is not None

            wait_until(progressed, 60, message="the projector to apply something")
            assert proc.poll() is None, log_file.read_text()[-3000:]
            if r % 2:
                # Kill while a snapshot is being written, if one starts within a few seconds.
                with contextlib.suppress(AssertionError):
                    wait_until(lambda: _writing(settings, stale), 5, interval=0.001)  # noqa: B023
            else:
                time.sleep(rng.uniform(0.0, 1.0))  # the random kill point (deliberate, not a wait)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        during_snapshot += _writing(settings, stale)  # a half-written snapshot the kill left behind
        ingest.join(300)
        assert not ingest.is_alive() and not errors, errors
    last = max(r.offset for r in read_topic(settings.kafka_bootstrap, settings.topic, expected=1))
    assert any(settings.snapshot_dir.iterdir()), "snapshots were being written while killed"
    assert during_snapshot >= 1, "no kill landed while a snapshot was being written"
    assert max(acked) <= last

    with running_projector(settings) as recovered:
        recovered.wait_for(0, last, 120)
        got_state, got_catalog = state_of(recovered), catalog_of(recovered)
        got_top = exact_top(recovered, "crash", vectors[:25])
        count = len(recovered.state.get("crash"))
    fresh_settings = settings.replace(data_dir=settings.data_dir.parent / "fresh", projection="fresh")
    with running_projector(fresh_settings) as fresh:
        fresh.wait_for(0, last, 120)
        assert len(fresh.state.get("crash")) == count
        assert state_of(fresh) == got_state
        assert catalog_of(fresh) == got_catalog
        assert exact_top(fresh, "crash", vectors[:25]) == got_top
    assert count > 45_000
    reliability.record("crash", "projector: kill -9 during ingest and snapshots", kills=rounds,
                       kills_while_writing_a_snapshot=during_snapshot, acknowledged_checked=len(acked),
                       acknowledged_lost=0, points_compared_with_fresh_replay=count)


def test_kill_9_right_after_a_bulk_load_replays_a_bounded_tail(settings: Settings) -> None:
    """Snapshots are due after ``snapshot_every_vectors`` inserted vectors (128-d equivalents: ``every``
    vectors of DIM dimensions here), whatever the event count:
    a kill -9 right after a bulk load (no clean stop) leaves a tail of at most that many vectors
    (twice that, if the last snapshot was still being completed in the background, plus the unit
    being applied) for the restart to replay, at any collection size."""
    every, n, batch = 2_000, 24_000, 250
    vectors = np.random.default_rng(1).random((n, DIM), dtype=np.float32)
    with VectorProducer(settings) as p:
        p.create_collection("bulk", DIM, "l2", m=8, ef_construction=48)
    env = dict(_env(settings), VECTORIZER_SNAPSHOT_EVERY_EVENTS="1000000", VECTORIZER_SNAPSHOT_EVERY_SECONDS="100000",
               VECTORIZER_SNAPSHOT_EVERY_VECTORS=str(every * DIM // 128))  # counted as 128-d vectors
    log_file = settings.data_dir.parent / "projector-bulk.log"
    with open(log_file, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vectorizer", "project"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    catalog = Catalog(settings.resolved_catalog_url, settings.projection, settings.topic)
    try:
        with VectorProducer(settings) as p:
            for s in range(0, n, batch):
                last = p.upsert("bulk", list(range(s, s + batch)), vectors[s:s + batch]).offset
        wait_until(lambda: catalog.positions().get(0, -1) >= last or proc.poll() is not None, 300,
                   message="the bulk load applied")
        assert proc.poll() is None, log_file.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)  # at once: no clean stop, no final snapshot
        proc.wait(30)
    found = sorted(settings.snapshot_dir.iterdir())
    assert len([f for f in found if not f.name.startswith(".")]) >= 2, "snapshots were taken during the load"
    with running_projector(settings) as recovered:
        recovered.wait_for(0, last, 120)
        assert recovered.stats.loaded_snapshot is not None
        replayed = recovered.stats.vectors_applied
        assert replayed <= 2 * every + 8 * batch, f"replayed {replayed} vectors after the snapshot"
        got_state, got_top = state_of(recovered), exact_top(recovered, "bulk", vectors[:10])
        segments = len(recovered.state.get("bulk").index.segments)
    assert segments == n // SEGMENT + 1
    fresh_settings = settings.replace(data_dir=settings.data_dir.parent / "fresh", projection="fresh")
    with running_projector(fresh_settings) as fresh:
        fresh.wait_for(0, last, 120)
        assert state_of(fresh) == got_state and exact_top(fresh, "bulk", vectors[:10]) == got_top
    reliability.record("crash", "projector: kill -9 right after a bulk load", vectors=n,
                       snapshot_every_vectors=every, vectors_replayed_after_restart=replayed)
