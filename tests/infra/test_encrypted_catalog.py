"""Encryption at rest of the SQL catalog's payloads (and a backup's copy), through the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from consumers import integrity
from infra.keyring import Keyring
from infra.migrations.tables import points
from infra.settings import Settings
from producers import VectorProducer
from projections.catalog import sealed
from projections.catalog.store import Catalog
from schemas.errors import AuthenticationFailed
from schemas.ids import catalog_key
from tests.helpers import catalog_of, running_projector, state_of
from tests.infra.conftest import ROWS, SECRET, operator_cli, write_secrets


def _stored(settings: Settings, collection: str) -> dict[str, str | None]:
    """The payload column as stored, by point key."""
    catalog = Catalog.of(settings, create=False)
    try:
        return {r["point_key"]: r["payload"] for r in catalog.point_rows(collection)}
    finally:
        catalog.close()


def assert_nothing_clear(root: Path) -> None:
    """No file below ``root`` (SQLite's database and WAL included) holds a vector's bytes or a payload."""
    files = [f for f in root.rglob("*") if f.is_file()]
    assert files
    for f in files:
        raw = f.read_bytes()
        assert ROWS[0].tobytes()[:8] not in raw and ROWS[2].tobytes()[-8:] not in raw, f
        assert SECRET.encode() not in raw, f


def test_catalog_payloads_are_sealed_and_verify_restart_backup_and_restore_read_them(encrypted: Settings,
                                                                                    tmp_path: Path) -> None:
    last = write_secrets(encrypted, "secret")
    with running_projector(encrypted) as proj:
        proj.wait_for(0, last, 30)
        before = state_of(proj), catalog_of(proj)
    assert before[1]["secret"]["points"][catalog_key(1)][0] == json.dumps({"note": SECRET}, separators=(",", ":"))
    stored = _stored(encrypted, "secret")
    assert stored[catalog_key(2)] is None  # no payload: NULL, as before
    assert all(stored[catalog_key(i)].startswith(sealed.TEXT_PREFIX) for i in (1, 3))  # type: ignore[union-attr]
    assert (encrypted.data_dir / "catalog.db").exists()
    assert_nothing_clear(encrypted.data_dir)  # catalog.db (and its WAL) and the projection snapshot
    report = integrity.verify(encrypted)
    assert report.ok, report.problems
    with running_projector(encrypted) as proj:  # restart: the same state and the same clear catalog
        assert (state_of(proj), catalog_of(proj)) == before
    code, out = operator_cli(encrypted, "backup", str(tmp_path / "bk"))
    assert code == 0, out
    assert_nothing_clear(tmp_path / "bk")  # catalog.jsonl included
    target = encrypted.replace(data_dir=tmp_path / "restored")
    code, out = operator_cli(target, "restore", str(tmp_path / "bk"))
    assert code == 0, out
    assert _stored(target, "secret") == stored  # sealed rows installed as they were
    assert integrity.verify(target).ok
    with running_projector(target) as restored:
        assert (state_of(restored), catalog_of(restored)) == before


def test_a_postgres_catalog_holds_sealed_payloads_too(encrypted: Settings, pg_schema_url: str) -> None:
    on = encrypted.replace(catalog_url=pg_schema_url)
    last = write_secrets(on, "secret")
    with running_projector(on) as proj:
        proj.wait_for(0, last, 30)
        rows = catalog_of(proj)["secret"]["points"]
    assert rows[catalog_key(3)][0] == json.dumps({"note": SECRET + "-2"}, separators=(",", ":"))
    stored = _stored(on, "secret")
    assert stored[catalog_key(2)] is None
    assert all(stored[catalog_key(i)].startswith(sealed.TEXT_PREFIX) for i in (1, 3))  # type: ignore[union-attr]
    assert not any(SECRET in (v or "") for v in stored.values())
    report = integrity.verify(on)
    assert report.ok, report.problems


def test_a_swapped_sealed_payload_is_a_verify_problem_and_repair_mends_it(encrypted: Settings) -> None:
    last = write_secrets(encrypted, "secret")
    with running_projector(encrypted) as proj:
        proj.wait_for(0, last, 30)
        before = catalog_of(proj)
    stored = _stored(encrypted, "secret")
    one, three = catalog_key(1), catalog_key(3)
    engine = sa.create_engine(encrypted.resolved_catalog_url)
    with engine.begin() as conn:  # each row gets the other's ciphertext: valid seals, wrong points
        for key, value in ((one, stored[three]), (three, stored[one])):
            conn.execute(points.update().where(points.c.collection == "secret", points.c.point_key == key)
                         .values(payload=value))
    engine.dispose()
    ring = Keyring.open(encrypted)
    assert ring is not None
    try:
        with pytest.raises(AuthenticationFailed):
            sealed.open_payload(stored[three], "secret", one, ring)
        with pytest.raises(AuthenticationFailed):  # nor under another collection's name
            sealed.open_payload(stored[one], "other", one, ring)
    finally:
        ring.close()
    problems = integrity.verify(encrypted).problems
    assert len(problems) == 2 and all(p.kind == "catalog" and "failed authentication" in p.detail
                                      for p in problems), problems
    assert sorted(p.detail.split(": payload:")[0] for p in problems) == [f"point {one}", f"point {three}"]
    report = integrity.repair(encrypted)
    assert report.ok, report.problems
    mended = _stored(encrypted, "secret")
    assert all(mended[k].startswith(sealed.TEXT_PREFIX) for k in (one, three))  # type: ignore[union-attr]
    with running_projector(encrypted) as proj:
        assert catalog_of(proj) == before


def test_clear_rows_written_before_encryption_stay_readable_and_a_backup_seals_them(
        settings: Settings, key_file: Path, tmp_path: Path) -> None:
    last = write_secrets(settings, "secret")  # encryption off: clear rows, as every catalog so far
    with running_projector(settings) as proj:
        proj.wait_for(0, last, 30)
    clear = _stored(settings, "secret")
    assert clear[catalog_key(1)] == json.dumps({"note": SECRET}, separators=(",", ":"))
    on = settings.replace(encryption=True, encryption_key_file=key_file)
    with VectorProducer(on) as p:
        late = p.upsert("secret", [4], ROWS[:1], [{"note": "late"}]).offset
    with running_projector(on) as proj:
        proj.wait_for(0, late, 30)
        got = catalog_of(proj)
    mixed = _stored(on, "secret")
    assert mixed[catalog_key(1)] == clear[catalog_key(1)]  # kept as written
    assert mixed[catalog_key(4)].startswith(sealed.TEXT_PREFIX)  # type: ignore[union-attr]
    assert got["secret"]["points"][catalog_key(4)][0] == '{"note":"late"}'
    assert got["secret"]["points"][catalog_key(1)][0] == clear[catalog_key(1)]
    report = integrity.verify(on)
    assert report.ok, report.problems
    code, out = operator_cli(on, "backup", str(tmp_path / "bk"))
    assert code == 0, out
    assert SECRET not in (tmp_path / "bk" / "catalog.jsonl").read_text()  # the clear rows sealed in the copy
