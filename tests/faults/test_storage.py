"""Storage faults: the snapshot directory unwritable or full, the catalog database unavailable.

- snapshots fail, the server keeps serving (reads and acknowledged writes), and says so in
  ``/metrics`` and in its log; no partial snapshot is ever left behind or loaded;
- the catalog database refuses connections for a while: the projector pauses, retries and
  resumes; nothing acknowledged is lost and the catalog ends equal to a fresh replay's.

Real faults, no mocks: a regular file where the snapshot directory should be; a per-process
file-size limit (``RLIMIT_FSIZE``, what a full disk looks like to a writer: writes past it
fail) while a snapshot is written; Postgres told to refuse connections to the database.
"""

from __future__ import annotations

import contextlib
import logging
import re
import resource
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa

from consumers import snapshots
from infra.settings import Settings
from producers import VectorProducer
from projections.errors import ConsistencyTimeout
from tests import reliability
from tests.api.conftest import Running, serving
from tests.helpers import catalog_of, running_projector, state_of, wait_until

DIM = 32


def _metric(server: Running, name: str) -> float:
    text = server.http.get("/metrics").text
    found = re.search(rf"^{name}(?:_total)? ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


def _upsert(server: Running, ids: range, wait: bool = True) -> None:
    vectors = np.random.default_rng(ids.start).random((len(ids), DIM)).tolist()
    r = server.http.put("/collections/s/points", params={"wait": str(wait).lower()},
                        json={"batch": {"ids": list(ids), "vectors": vectors, "payloads": [{"i": i} for i in ids]}})
    assert r.status_code == 200 and r.json()["result"]["status"] == ("completed" if wait else "acknowledged"), r.text


@contextlib.contextmanager
def _disk_full_past(size: int) -> Iterator[None]:
    """What a full disk looks like to this process's writers: writes past ``size`` bytes fail."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _count(server: Running) -> int:
    return int(server.http.post("/collections/s/points/count", json={"exact": True}).json()["result"]["count"])


def test_snapshot_directory_unwritable_then_full_server_keeps_serving(settings: Settings,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    settings = settings.replace(snapshot_every_events=3)
    caplog.set_level(logging.ERROR, logger="consumers.projector")
    with serving(settings) as server:
        assert server.http.put("/collections/s", json={"vectors": {"size": DIM, "distance": "Cosine"}}).is_success
        for s in range(0, 500, 100):
            _upsert(server, range(s, s + 100))
        good = wait_until(lambda: snapshots.list_snapshots(settings.snapshot_dir), 30, message="a first snapshot")[0]
        projector = server.replica.projector
        wait_until(lambda: projector._events_since_snapshot < 3 and not any(settings.snapshot_dir.glob(".tmp-*")),  # noqa: SLF001 - no public view of it
                   30, message="no snapshot due or being written")  # so the directory is not swapped mid-write
        good = snapshots.list_snapshots(settings.snapshot_dir)[0]

        # 1. Unwritable: a regular file where the snapshot directory should be.
        settings.snapshot_dir.rename(settings.snapshot_dir.with_name("kept"))
        settings.snapshot_dir.write_text("not a directory")
        failures = _metric(server, "vectorizer_snapshot_failures")
        for s in range(500, 1500, 100):
            _upsert(server, range(s, s + 100))  # acknowledged and applied while snapshots fail
        wait_until(lambda: _metric(server, "vectorizer_snapshot_failures") > failures, 30,
                   message="a failed snapshot counted in /metrics")
        assert _metric(server, "vectorizer_snapshot_failing") == 1.0
        assert any("snapshot failed" in r.getMessage() for r in caplog.records), "the failure is logged"
        refused = server.http.post("/collections/s/snapshots")
        assert refused.status_code == 503 and "snapshot could not be written" in refused.text, refused.text
        assert _count(server) == 1500
        assert len(server.http.post("/collections/s/points/query", json={"query": [0.5] * DIM, "limit": 5})
                   .json()["result"]["points"]) == 5

        # The directory comes back: the next snapshot succeeds and the gauge clears.
        settings.snapshot_dir.unlink()
        settings.snapshot_dir.with_name("kept").rename(settings.snapshot_dir)
        assert server.http.post("/collections/s/snapshots").status_code == 200
        assert _metric(server, "vectorizer_snapshot_failing") == 0.0
        complete = snapshots.list_snapshots(settings.snapshot_dir)[0]

        # 2. Full: writes past 256 KiB fail while the (larger) snapshot is written. hnswlib's
        # writer ignores the error; the structural check catches the short file.
        _upsert(server, range(1500, 2000))
        with _disk_full_past(256 * 1024):
            full = server.http.post("/collections/s/snapshots")
        assert full.status_code == 503, full.text
        assert "incomplete write" in full.text or "File too large" in full.text, full.text
        assert snapshots.list_snapshots(settings.snapshot_dir)[0] == complete, "no new (partial) snapshot"
        assert not list(settings.snapshot_dir.glob(".tmp-*")), "the failed write was cleaned up"
        assert _count(server) == 2000
        failed = int(_metric(server, "vectorizer_snapshot_failures"))

    # A restart loads the newest complete snapshot and replays the rest: everything is there.
    assert all(not snapshots.verify(p) for p in snapshots.list_snapshots(settings.snapshot_dir))
    with serving(settings) as server:
        assert server.replica.projector.stats.loaded_snapshot is not None
        assert server.replica.projector.stats.loaded_snapshot >= complete.name > good.name
        assert _count(server) == 2000
        got = server.http.post("/collections/s/points", json={"ids": list(range(2000)), "with_payload": True})
        assert sorted(p["payload"]["i"] for p in got.json()["result"]) == list(range(2000))
    reliability.record("storage", "snapshot directory unwritable, then full", storage_faults=2,
                       failed_snapshots=failed, acknowledged_checked=2000, acknowledged_lost=0,
                       partial_snapshots_loaded=0)


def test_disk_full_while_an_int8_snapshot_is_written_keeps_the_rows_served(settings: Settings) -> None:
    """An int8 collection's float32 rows go to disk with its snapshots (beside its faiss graph); a
    full disk during that write fails the snapshot, the rows written since the last one stay
    served from memory, and the next snapshot and a restart have every vector exactly."""
    settings = settings.replace(snapshot_every_events=1_000_000, snapshot_every_vectors=1_000_000,
                                snapshot_every_seconds=100_000.0)
    rng = np.random.default_rng(5)
    vectors = rng.random((4000, DIM), dtype=np.float32)

    def put(server: Running, ids: range) -> None:
        r = server.http.put("/collections/q/points", params={"wait": "true"},
                            json={"batch": {"ids": list(ids), "vectors": vectors[ids.start:ids.stop].tolist()}})
        assert r.status_code == 200, r.text

    def stored(server: Running) -> np.ndarray:
        got = server.http.post("/collections/q/points", json={"ids": list(range(4000)), "with_vector": True})
        return np.array([p["vector"] for p in sorted(got.json()["result"], key=lambda p: p["id"])], np.float32)

    with serving(settings) as server:
        assert server.http.put("/collections/q", json={"vectors": {"size": DIM, "distance": "Dot"},
                               "quantization_config": {"scalar": {"type": "int8"}}}).is_success
        put(server, range(0, 3000))
        assert server.http.post("/collections/q/snapshots").status_code == 200
        complete = snapshots.list_snapshots(settings.snapshot_dir)[0]
        put(server, range(3000, 4000))  # rows in memory until a snapshot writes them
        with _disk_full_past(256 * 1024):
            full = server.http.post("/collections/q/snapshots")
        assert full.status_code == 503, full.text
        assert snapshots.list_snapshots(settings.snapshot_dir)[0] == complete, "no new (partial) snapshot"
        assert np.array_equal(stored(server), vectors)
        hits = server.http.post("/collections/q/points/query", json={"query": vectors[3500].tolist(), "limit": 10})
        points = hits.json()["result"]["points"]  # scored from the rows, those in memory included
        assert len(points) == 10 and any(p["id"] >= 3000 for p in points)
        assert [p["score"] for p in points] == pytest.approx([float(vectors[p["id"]] @ vectors[3500]) for p in points],
                                                             rel=1e-5)
        assert server.http.post("/collections/q/snapshots").status_code == 200
    with serving(settings) as server:
        assert server.replica.projector.stats.loaded_snapshot is not None
        assert np.array_equal(stored(server), vectors)


@contextlib.contextmanager
def _own_database(postgres_url: str) -> Iterator[tuple[str, sa.Engine, str]]:
    """A fresh Postgres database for this test (so refusing connections to it harms no one)."""
    name = f"vz_outage_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url, admin, name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_catalog_database_unavailable_for_a_while_projector_pauses_and_resumes(settings: Settings,
                                                                                postgres_url: str) -> None:
    with _own_database(postgres_url) as (url, admin, name):
        settings = settings.replace(catalog_url=url)
        acked: list[int] = []
        with VectorProducer(settings) as producer, running_projector(settings) as projector:
            last = producer.create_collection("s", DIM, "l2").offset
            vectors = np.random.default_rng(3).random((3000, DIM), dtype=np.float32)
            for s in range(0, 1000, 100):
                last = producer.upsert("s", list(range(s, s + 100)), vectors[s:s + 100]).offset
                acked += range(s, s + 100)
            projector.wait_for(0, last, 60)

            with admin.connect() as conn:  # the outage: no new connections, existing ones cut
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name})
            for s in range(1000, 3000, 100):  # the log still takes writes: Kafka is the source of truth
                last = producer.upsert("s", list(range(s, s + 100)), vectors[s:s + 100]).offset
                acked += range(s, s + 100)
            wait_until(lambda: projector.stats.catalog_failures >= 2, 60, message="the projector to hit the outage")
            assert projector.positions().get(0, -1) < last, "nothing is applied past the outage"
            paused_at = projector.positions().get(0, -1)
            # A wait with no timeout answers "not yet" during the outage instead of piling up (wait=true
            # requests hold server threads); the write stays durable and is applied after.
            with pytest.raises(ConsistencyTimeout, match="paused while the catalog is unavailable"):
                projector.wait_for(0, last, None)

            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            projector.wait_for(0, last, 60)  # resumes by itself
            got_state, got_catalog = state_of(projector), catalog_of(projector)
            failures = projector.stats.catalog_failures
        assert len(got_state["s"]["points"]) == 3000
        assert set(got_catalog["s"]["points"]) == {f"n:{i}" for i in acked}

        fresh = settings.replace(data_dir=settings.data_dir.parent / "fresh", projection="fresh",
                                 catalog_url=f"sqlite:///{settings.data_dir.parent / 'fresh.db'}")
        with running_projector(fresh) as replayed:
            replayed.wait_for(0, last, 60)
            assert state_of(replayed) == got_state
            assert catalog_of(replayed) == got_catalog
    reliability.record("storage", "catalog database (Postgres) refuses connections mid-ingest",
                       storage_faults=1, failed_catalog_commits_retried=failures, paused_at_offset=paused_at,
                       acknowledged_checked=len(acked), acknowledged_lost=0)
