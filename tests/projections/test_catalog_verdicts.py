"""The catalog knows from which offset its rejections are complete: a catalog that predates
the rejections table (migration 0002) never answers "applied" for records it could not judge."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from infra.migrations.tables import tracking
from projections.catalog.store import MIGRATIONS, Catalog, make_engine
from projections.changes import Rejection


def test_a_catalog_upgraded_to_rejections_knows_verdicts_only_from_its_position_on(catalog_url: str) -> None:
    engine = make_engine(catalog_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:  # the catalog as the previous version left it: tracking at offset 41
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(tracking.insert().values(projection="default", topic="t", partition_id=0, applied_offset=41))
    engine.dispose()

    catalog = Catalog(catalog_url, "default", "t")  # migrates to head
    try:
        catalog.start_verdicts([0, 1])
        assert catalog.verdicts_start(0) == 42 and catalog.verdicts_start(1) == 0
        catalog.start_verdicts([0])  # a later start keeps the first mark
        catalog.commit([Rejection(0, 50, "c", "rejected", 404, "collection 'c' does not exist")], {0: 50})
        catalog.start_verdicts([0])
        assert catalog.verdicts_start(0) == 42
        assert [r.status for r in catalog.rejections(0, [43, 50])] == [404]
        with catalog.engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from vz_rejections")).scalar_one() == 1
    finally:
        catalog.close()
