"""A backup is one consistent cut of the catalog, on SQLite and Postgres, while writes go on.

The catalog is read in one snapshot-isolated transaction (``Catalog.cut``): a projector commit
landing between two of its reads is not seen by any of them. Backups taken while a writer
publishes and a projector applies are each restored into their own directory and verified
clean at their own offsets.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from consumers import backup as backups
from consumers import integrity
from infra.settings import Settings
from producers import VectorProducer
from projections.catalog.store import Catalog
from projections.changes import PointRow, PutCollection, PutPoints, Rejection
from schemas.events import CollectionCreated, EventMeta
from tests.helpers import running_projector, wait_until

BACKUPS = 20
WRITES_PER_BACKUP = 6


def _rows(first: int, count: int, version: int) -> tuple[PointRow, ...]:
    return tuple(PointRow(f"n:{i}", i, None, "0", version) for i in range(first, first + count))


def test_a_cut_does_not_see_a_commit_landing_between_its_reads(catalog_url: str, topic: str) -> None:
    """A projector commit made while the read is between its tracking read and its point read is
    seen by none of the reads (on the old code, SQLite's point read saw it: a torn backup)."""
    catalog = Catalog(catalog_url, "default", topic)
    writer = Catalog(catalog_url, "default", topic)
    try:
        created = CollectionCreated(EventMeta.new("docs", "test"), dimension=4)
        catalog.commit([PutCollection(created, 0), PutPoints("docs", _rows(0, 10, 1))], {0: 1})
        landed: list[int] = []

        @sa.event.listens_for(catalog.engine, "before_cursor_execute")
        def commit_meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "FROM vz_collections" in statement and len(landed) < 2:  # the tracking row was read already
                n = len(landed)
                landed.append(n)
                writer.commit([PutPoints("docs", _rows(10 + 10 * n, 10, 2 + n)),
                               Rejection(0, 2 + n, "docs", "rejected", 404, "a later refusal")], {0: 2 + n})

        positions, _, pts = catalog.export()
        assert landed == [0], "the concurrent commit ran during the export"
        assert positions == {0: 1} and sorted(r["point_key"] for r in pts) == sorted(f"n:{i}" for i in range(10))
        cut = catalog.cut()
        assert landed == [0, 1], "the concurrent commit ran during the cut"
        assert cut.positions == {0: 2} and len(cut.points) == 20 and len(cut.rejections) == 1
        assert backups.cut_problems(cut, 1) == []
        after = catalog.cut()  # the next cut sees the whole commit
        assert after.positions == {0: 3} and len(after.points) == 30 and len(after.rejections) == 2
        assert backups.cut_problems(after, 1) == []
    finally:
        catalog.close()
        writer.close()


@contextlib.contextmanager
def _pg_schemas(postgres_url: str) -> Iterator[Any]:
    """Make fresh Postgres schemas on demand (a URL each); all are dropped afterwards."""
    engine = sa.create_engine(postgres_url)
    made: list[str] = []

    def make() -> str:
        name = f"s_restore_{uuid.uuid4().hex[:10]}"
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        sep = "&" if "?" in postgres_url else "?"
        return f"{postgres_url}{sep}options=-csearch_path%3D{name}"

    try:
        yield make
    finally:
        with engine.begin() as conn:
            for name in made:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


def test_backups_under_concurrent_writes_restore_and_verify_clean(settings: Settings, catalog_url: str,
                                                                  tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    live = settings.replace(catalog_url=catalog_url)
    with VectorProducer(live) as p:
        p.create_collection("docs", 4, "l2", m=8, ef_construction=32)
        first = p.upsert("docs", list(range(50)), np.random.default_rng(0).random((50, 4), dtype=np.float32))
    stop = threading.Event()
    budget = threading.Semaphore(0)  # writes allowed: a few per backup, so the log (each backup replays it) stays small
    written: list[int] = []
    failure: list[BaseException] = []

    def write() -> None:
        rng = np.random.default_rng(1)
        try:
            with VectorProducer(live) as p:
                while not stop.is_set():
                    if not budget.acquire(timeout=0.05):
                        continue
                    n = len(written)
                    ids = [int(i) for i in rng.integers(0, 400, size=10)]
                    ids = list(dict.fromkeys(ids))
                    p.upsert("docs", ids, rng.random((len(ids), 4), dtype=np.float32), [{"n": n}] * len(ids))
                    if n % 5 == 4:
                        p.delete("docs", ids[:3])
                    written.append(n)
        except BaseException as exc:  # noqa: BLE001 - reported in the test's thread
            failure.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    manifests: list[dict[str, Any]] = []
    with running_projector(live) as proj:
        proj.wait_for(first.partition, first.offset, 30)
        writer.start()
        try:
            for i in range(BACKUPS):
                # Each backup is taken after the projection moved on from the last one, while the writer runs.
                floor = int(manifests[-1]["offsets"]["0"]) if manifests else first.offset
                for _ in range(WRITES_PER_BACKUP // 2):
                    budget.release()

                def moved_past(floor: int = floor) -> object:
                    return proj.positions().get(0, -1) > floor or failure

                wait_until(moved_past, 30, message=f"the projection to move past {floor}")
                assert not failure, failure
                for _ in range(WRITES_PER_BACKUP - WRITES_PER_BACKUP // 2):  # published while this backup runs
                    budget.release()
                manifests.append(backups.backup(live, tmp_path / f"bk{i}"))
        finally:
            stop.set()
            writer.join(60)
    assert not failure, failure
    assert len(written) > BACKUPS, "writes went on during the backups"
    offsets = [int(m["offsets"]["0"]) for m in manifests]
    assert offsets == sorted(offsets) and len(set(offsets)) == BACKUPS, offsets

    schemas = (contextlib.nullcontext(None) if catalog_url.startswith("sqlite")
               else _pg_schemas(str(request.getfixturevalue("postgres_url"))))
    with schemas as make_schema:
        for i, manifest in enumerate(manifests):
            target = settings.replace(data_dir=tmp_path / f"restored{i}",
                                      catalog_url="" if make_schema is None else make_schema())
            restored = backups.restore(target, tmp_path / f"bk{i}")
            assert restored["offsets"] == manifest["offsets"]
            report = integrity.verify(target, recall_samples=5)
            assert report.ok, (i, manifest["offsets"], [str(p) for p in report.problems[:5]])
            assert report.offsets == {0: int(manifest["offsets"]["0"])}
