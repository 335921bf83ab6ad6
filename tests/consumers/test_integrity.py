"""verify / repair / backup / restore / replay through the real broker and the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from consumers import backup as backups
from consumers import integrity, snapshots
from infra.settings import Settings
from producers import VectorProducer
from producers.errors import VerdictUnknown, WriteRejected
from projections.search import search
from tests.helpers import catalog_of, run_cli, running_projector, state_of, wait_until

_cli = run_cli


@pytest.fixture
def populated(settings: Settings) -> Settings:
    """Two collections, deletes and payload updates, projected with a snapshot at the end."""
    rng = np.random.default_rng(5)
    with VectorProducer(settings) as p:
        p.create_collection("docs", 8, "cosine", m=8, ef_construction=64)
        p.create_collection("other", 4, "l2")
        p.upsert("docs", list(range(400)), rng.random((400, 8), dtype=np.float32), [{"n": i} for i in range(400)])
        p.upsert("other", ["a", "b"], rng.random((2, 4), dtype=np.float32))
        p.delete("docs", list(range(0, 400, 10)))
        token = p.set_payload("docs", [1, 2, 3], {"tag": "x"})
    with running_projector(settings) as proj:
        proj.wait_for(token.partition, token.offset, 30)
    assert snapshots.list_snapshots(settings.snapshot_dir), "a final snapshot was written on stop"
    return settings


def test_verify_is_clean_on_a_sound_data_dir(populated: Settings) -> None:
    code, out = _cli(populated, "verify")
    assert code == 0, out
    assert "OK" in out and "2 collections, 362 points" in out
    code, out = _cli(populated, "--json", "verify", "docs")
    report = json.loads(out)
    assert report["ok"] is True and report["checked"]["collections"] == ["docs"]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["index-byte", "manifest", "missing-file", "catalog-row", "catalog-extra-row"])
def test_verify_names_each_damage_and_repair_restores_equality(populated: Settings, damage: str) -> None:
    snap = snapshots.list_snapshots(populated.snapshot_dir)[0]
    engine = sa.create_engine(populated.resolved_catalog_url)
    if damage == "index-byte":
        _flip(snap / "c0000.s0000.hnsw")
        expected = f"snapshot: {snap.name}/c0000.s0000.hnsw: checksum mismatch"
    elif damage == "manifest":
        _flip(snap / "manifest.json")
        expected = f"snapshot: {snap.name}/manifest.json:"
    elif damage == "missing-file":
        (snap / "c0001.s0000.points.avro").unlink()
        expected = f"snapshot: {snap.name}/c0001.s0000.points.avro: missing"
    elif damage == "catalog-row":
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE vz_points SET payload = '{\"n\": 999}' WHERE point_key = 'n:5'"))
        expected = "catalog: [docs] point n:5: payload differs from the log"
    else:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO vz_points VALUES ('docs', 'n:10', 10, NULL, '0', 1)"))
        expected = "catalog: [docs] point n:10 is not in the log (deleted or never written)"
    engine.dispose()

    code, out = _cli(populated, "verify")
    assert code == 1, out
    assert expected in out, out
    code, out = _cli(populated, "repair")
    assert code == 0, out
    code, out = _cli(populated, "verify")
    assert code == 0, out

    with running_projector(populated) as repaired:
        wait_until(lambda: repaired.ready.is_set(), 30)
        got = state_of(repaired), catalog_of(repaired)
    fresh = populated.replace(data_dir=populated.data_dir.parent / "fresh")
    with running_projector(fresh) as proj:
        wait_until(lambda: proj.ready.is_set(), 30)
        assert (state_of(proj), catalog_of(proj)) == got


def test_backup_restore_into_another_dir_gives_identical_results(populated: Settings, tmp_path: Path) -> None:
    code, out = _cli(populated, "backup", str(tmp_path / "bk"))
    assert code == 0, out
    with VectorProducer(populated) as p:                      # written after the backup: restored by replay
        token = p.upsert("docs", [1000], np.ones((1, 8), np.float32), [{"late": True}])
    target = populated.replace(data_dir=tmp_path / "restored")
    code, out = _cli(target, "restore", str(tmp_path / "bk"))
    assert code == 0, out
    queries = np.random.default_rng(9).random((10, 8), dtype=np.float32)
    with running_projector(target) as restored:
        restored.wait_for(token.partition, token.offset, 30)
        assert restored.stats.loaded_snapshot is not None, "the restore started from the backup's snapshot"
        got_state, got_catalog = state_of(restored), catalog_of(restored)
        got_hits = [[(h.id, round(h.score, 5)) for h in search(restored.state.get("docs"), q, 5)] for q in queries]
    with running_projector(populated) as original:
        original.wait_for(token.partition, token.offset, 30)
        assert state_of(original) == got_state and catalog_of(original) == got_catalog
        assert [[(h.id, round(h.score, 5)) for h in search(original.state.get("docs"), q, 5)] for q in queries] \
            == got_hits


def test_a_damaged_backup_is_refused_naming_the_files(populated: Settings, tmp_path: Path) -> None:
    backups.backup(populated, tmp_path / "bk")
    _flip(tmp_path / "bk" / "catalog.jsonl")
    index_file = next((tmp_path / "bk" / "snapshot").rglob("c0000.s0000.hnsw"))
    index_file.unlink()
    code, out = _cli(populated.replace(data_dir=tmp_path / "t"), "restore", str(tmp_path / "bk"))
    assert code == 1
    assert "catalog.jsonl (checksum mismatch)" in out and "c0000.s0000.hnsw (missing)" in out
    assert not (tmp_path / "t").exists(), "nothing is written when the backup does not verify"


def test_replay_beside_a_live_projector_gives_the_same_state(populated: Settings, tmp_path: Path) -> None:
    with running_projector(populated) as live:
        wait_until(lambda: live.ready.is_set(), 30)
        code, out = _cli(populated, "--json", "replay", "--data-dir", str(tmp_path / "replayed"),
                         "--from-beginning")
        assert code == 0, out
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["collections"] == {"docs": 360, "other": 2}
        live_state, live_catalog = state_of(live), catalog_of(live)
    with running_projector(populated.replace(data_dir=tmp_path / "replayed")) as replayed:
        wait_until(lambda: replayed.ready.is_set(), 30)
        assert replayed.stats.loaded_snapshot is not None
        assert state_of(replayed) == live_state and catalog_of(replayed) == live_catalog


def _rewrite_manifest(backup: Path, **changes: object) -> None:
    """Edit a backup's manifest and re-sign it (files and manifest checksums), as an older version wrote it."""
    import xxhash

    manifest = json.loads((backup / "backup.json").read_text())
    manifest.pop("manifest_checksum")
    manifest.update(changes)
    manifest["files"] = {rel: snapshots.file_checksum(backup / rel) for rel in manifest["files"]}
    manifest["manifest_checksum"] = xxhash.xxh3_64_hexdigest(json.dumps(manifest, sort_keys=True).encode())
    (backup / "backup.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def test_backups_keep_the_verdicts_and_format_1_backups_still_restore(populated: Settings, tmp_path: Path) -> None:
    from projections.catalog.store import Catalog

    with VectorProducer(populated) as p:
        refused = p.upsert("missing", [1], np.ones((1, 8), np.float32))
    with running_projector(populated) as proj:
        proj.wait_for(refused.partition, refused.offset, 30)
    backups.backup(populated, tmp_path / "bk")
    lines = (tmp_path / "bk" / "catalog.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["table"] == "rejections" for line in lines) == 1

    def restored(backup: Path, where: str) -> Settings:
        target = populated.replace(data_dir=tmp_path / where)
        code, out = _cli(target, "restore", str(backup))
        assert code == 0, out
        return target

    with VectorProducer(restored(tmp_path / "bk", "r2")) as p, pytest.raises(WriteRejected) as caught:
        p.wait_applied(refused, timeout=30)
    assert caught.value.status == 404
    # The same backup as format 1 wrote it (no rejection rows): it restores, and a verdict older
    # than its offsets is unknown, never "applied".
    (tmp_path / "bk" / "catalog.jsonl").write_text(
        "".join(line + "\n" for line in lines if json.loads(line)["table"] not in ("rejections", "verdicts_from")))
    _rewrite_manifest(tmp_path / "bk", format=1)
    target = restored(tmp_path / "bk", "r1")
    catalog = Catalog(target.resolved_catalog_url, target.projection, target.topic)
    try:
        assert catalog.rejections(refused.partition, [refused.offset]) == []
        assert catalog.verdicts_start(refused.partition) == refused.offset + 1
    finally:
        catalog.close()
    with VectorProducer(target) as p, pytest.raises(VerdictUnknown):
        p.wait_applied(refused, timeout=30)
    # A backup of a newer format is refused with a clear message.
    _rewrite_manifest(tmp_path / "bk", format=99)
    code, out = _cli(populated.replace(data_dir=tmp_path / "r3"), "restore", str(tmp_path / "bk"))
    assert code == 1 and "backup format 99 is newer" in out, out


def _cli_within(settings: Settings, seconds: float, *args: str) -> tuple[int, str]:
    """``run_cli`` in a thread, failing the test (rather than hanging it) past ``seconds``."""
    import threading

    done: list[tuple[int, str]] = []
    thread = threading.Thread(target=lambda: done.append(_cli(settings, *args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert done, f"`vectorizer {' '.join(args)}` did not answer within {seconds}s"
    return done[0]


def test_verify_and_repair_report_a_catalog_ahead_of_the_log(populated: Settings) -> None:
    from consumers.replay import log_ends

    end = log_ends(populated)[0]
    engine = sa.create_engine(populated.resolved_catalog_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE vz_tracking SET applied_offset = applied_offset + 45"))
    engine.dispose()
    at = end - 1 + 45
    for command in ("verify", "repair"):
        code, out = _cli_within(populated, 60, command)
        assert code == 1, out
        assert (f"the catalog is at 0:{at} but the log ends at 0:{end}: the log changed beneath this projection "
                f"(recreated topic, wiped broker, other cluster); rebuild with `vectorizer replay "
                f"--from-beginning`") in out, out
    code, out = _cli_within(populated, 60, "--json", "verify")
    report = json.loads(out)
    assert report["ok"] is False and [p["kind"] for p in report["problems"]] == ["log"]
    code, out = _cli_within(populated, 60, "backup", str(populated.data_dir.parent / "bk"))
    assert code == 1 and "the log changed beneath this projection" in out, out


def test_verify_reports_a_deleted_or_empty_catalog_and_creates_none(populated: Settings) -> None:
    catalog_db = populated.data_dir / "catalog.db"
    for extra in (catalog_db, Path(f"{catalog_db}-wal"), Path(f"{catalog_db}-shm")):
        extra.unlink(missing_ok=True)
    for command in ("verify", "repair"):
        code, out = _cli_within(populated, 60, command)
        assert code == 1, out
        assert "no catalog" in out, out
        assert not catalog_db.exists(), f"{command} created a catalog"
    report = integrity.verify(populated)
    assert not report.ok and "but the log ends at 0:" in str(report.problems[0]), report.problems
    assert not catalog_db.exists(), "integrity.verify created a catalog"
    # An empty catalog (the tables, no rows) beside a log that holds records is a problem too.
    from projections.catalog.store import Catalog

    Catalog(populated.resolved_catalog_url, populated.projection, populated.topic).close()
    code, out = _cli_within(populated, 60, "verify")
    assert code == 1, out
    assert "is empty (no tracking rows) but the log ends at 0:" in out, out


def test_verify_on_an_empty_postgres_schema_reports_it_and_creates_no_table(populated: Settings,
                                                                           pg_schema_url: str) -> None:
    target = populated.replace(catalog_url=pg_schema_url)
    for check in (integrity.verify, integrity.repair):
        report = check(target)
        assert not report.ok and "no catalog at" in str(report.problems[0]), report.problems
    engine = sa.create_engine(pg_schema_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == [], "verify created the catalog's tables"
    finally:
        engine.dispose()
