"""kill -9 of the projector at random points of a 50,000-vector ingest, several times.

Invariant: after the last crash, recovery (snapshot + log) yields exactly the state a fresh
replay of the whole topic builds: same ids, payloads, vectors, catalog rows, exact
search results.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from producers import VectorProducer
from projections.catalog.store import Catalog
from tests.helpers import catalog_of, exact_top, read_topic, running_projector, state_of, wait_until
from vectorizer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
N, DIM, BATCH = 50_000, 16, 250


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"VECTORIZER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "VECTORIZER_TOPIC": settings.topic,
                "VECTORIZER_DATA_DIR": str(settings.data_dir), "VECTORIZER_SNAPSHOT_EVERY_EVENTS": "20",
                "VECTORIZER_POLL_MAX_RECORDS": "8", "VECTORIZER_CATALOG_URL": ""})
    return env


def _ingest(settings: Settings, vectors: np.ndarray, lo: int, hi: int) -> None:
    rng = random.Random(lo)
    with VectorProducer(settings, producer_id=f"ingest-{lo}") as p:
        for s in range(lo, hi, BATCH):
            p.upsert("crash", list(range(s, s + BATCH)), vectors[s:s + BATCH],
                     [{"i": i, "batch": s // BATCH} for i in range(s, s + BATCH)])
            if s and rng.random() < 0.2:
                victims = rng.sample(range(s), 20)
                p.delete("crash", victims)
                p.upsert("crash", victims[:5], vectors[victims[:5]] * 2, [{"again": v} for v in victims[:5]])
                p.set_payload("crash", victims[5:10], {"touched": s})


def test_kill_9_during_ingest_and_snapshots_then_state_equals_fresh_replay(settings: Settings) -> None:
    vectors = np.random.default_rng(0).random((N, DIM), dtype=np.float32)
    with VectorProducer(settings) as p:
        p.create_collection("crash", DIM, "l2", m=8, ef_construction=48)
    catalog = Catalog(settings.resolved_catalog_url, settings.projection, settings.topic)
    rng = random.Random(11)
    rounds = 5
    share = N // rounds
    for r in range(rounds):
        # This round's share is published while a fresh projector consumes; it dies mid-work.
        ingest = threading.Thread(target=_ingest, args=(settings, vectors, r * share, (r + 1) * share))
        ingest.start()
        previous = catalog.positions().get(0, -1)
        log_file = settings.data_dir.parent / f"projector-{r}.log"
        with open(log_file, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "vectorizer", "project"], cwd=ROOT,
                                    env=_env(settings), stdout=log, stderr=subprocess.STDOUT)
        try:
            def progressed(proc: subprocess.Popen[bytes] = proc, previous: int = previous) -> bool:
                return catalog.positions().get(0, -1) > previous or proc.poll() is not None

            wait_until(progressed, 60, message="the projector to apply something")
            assert proc.poll() is None, log_file.read_text()[-3000:]
            time.sleep(rng.uniform(0.0, 1.0))  # the random kill point (deliberate, not a wait)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        ingest.join(120)
    last = max(r.offset for r in read_topic(settings.kafka_bootstrap, settings.topic, expected=1))
    assert any(settings.snapshot_dir.iterdir()), "snapshots were being written while killed"

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
