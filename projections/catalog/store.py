"""The SQL catalog: a durable mirror of the projection, plus the projection's position.

Contract of :meth:`Catalog.commit`: the changes of a batch of events and the tracking rows
that cover them are written in ONE transaction. A tracking row only moves forward
(``INSERT ... ON CONFLICT DO UPDATE ... WHERE applied_offset < new``); if any row would not
move, the whole transaction is rolled back and :class:`TrackingConflict` is raised, so an
event is never applied to the catalog twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from infra.migrations.tables import aliases, collections, log_identity, points, rejections, tracking, verdicts_from
from infra.process import masked_url
from infra.settings import Settings
from projections.catalog import sealed
from projections.changes import (
    Change,
    ConfigureCollection,
    DeletePoints,
    DropCollection,
    PutAliases,
    PutCollection,
    PutPoints,
    Rejection,
)
from projections.errors import CatalogUnavailable, TrackingConflict
from schemas.sealing import SealingKeys

MIGRATIONS = Path(__file__).resolve().parents[2] / "infra" / "migrations"
_CHUNK = 500


@dataclass(frozen=True)
class CatalogCut:
    """The whole catalog of one projection as one committed state (:meth:`Catalog.cut`)."""

    positions: dict[int, int]
    collections: list[dict[str, Any]]
    points: list[dict[str, Any]]
    rejections: list[dict[str, Any]]
    verdicts_from: dict[int, int]
    aliases: list[dict[str, Any]] = field(default_factory=list)  # alias_name, collection_name


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Catalog:
    def __init__(self, url: str, projection: str, topic: str, *, create: bool = True,
                 keys: SealingKeys | None = None) -> None:
        """Open (and migrate) the catalog; ``create=False`` opens an existing one only, for readers
        that must not create a database (raises :class:`CatalogUnavailable` when there is none).

        ``keys``: the data keys point payloads are sealed with when written (``projections.catalog.sealed``)
        and opened with by :meth:`payload`; None (nothing is encrypted): written as given. Writers
        that learn them later (the projector, at recovery) set :attr:`keys`."""
        self.url, self.projection, self.topic = url, projection, topic
        self.keys = keys
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if not create and not path.exists():
                raise CatalogUnavailable(f"no catalog at {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(url)
        try:
            if create:
                migrate(self.engine)
        except sa.exc.OperationalError as exc:
            raise CatalogUnavailable(f"catalog {self.safe_url}: {exc.orig}") from exc
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    @classmethod
    def of(cls, settings: Settings, *, create: bool, keys: SealingKeys | None = None) -> Catalog:
        """The catalog ``settings`` name: the one way to open it. ``create=True`` only where state
        is written (serve, project, replay, restore): it creates and migrates the database; readers
        open an existing one as it is (:class:`CatalogUnavailable` when there is none)."""
        return cls(settings.resolved_catalog_url, settings.projection, settings.topic, create=create, keys=keys)

    @property
    def safe_url(self) -> str:
        return masked_url(self.url)

    # Position ----------------------------------------------------------------------
    def positions(self) -> dict[int, int]:
        """Last applied offset per partition of this projection's topic (absent: nothing applied)."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(tracking.c.partition_id, tracking.c.applied_offset).where(
                    tracking.c.projection == self.projection, tracking.c.topic == self.topic))
                return {int(p): int(o) for p, o in rows}
        except sa.exc.OperationalError as exc:
            raise CatalogUnavailable(f"catalog {self.safe_url}: {exc.orig}") from exc

    # Writing -----------------------------------------------------------------------
    def commit(self, changes: Sequence[Change], positions: dict[int, int]) -> None:
        """Write ``changes`` and move tracking to ``positions`` atomically (see module doc)."""
        try:
            with self.engine.begin() as conn:
                for change in changes:
                    self._write(conn, change)
                for partition, offset in positions.items():
                    self._advance(conn, partition, offset)
        except sa.exc.OperationalError as exc:
            raise CatalogUnavailable(f"catalog {self.safe_url}: {exc.orig}") from exc

    def _advance(self, conn: Connection, partition: int, offset: int) -> None:
        insert = self._insert(tracking).values(projection=self.projection, topic=self.topic,
                                               partition_id=partition, applied_offset=offset)
        upsert = insert.on_conflict_do_update(
            index_elements=[tracking.c.projection, tracking.c.topic, tracking.c.partition_id],
            set_={"applied_offset": insert.excluded.applied_offset},
            where=tracking.c.applied_offset < insert.excluded.applied_offset).returning(tracking.c.applied_offset)
        if conn.execute(upsert).first() is None:  # the WHERE refused: already at or past this offset
            raise TrackingConflict(f"projection {self.projection!r} is already past {partition}:{offset} "
                                   f"on {self.topic}; the batch was applied before")

    def _write(self, conn: Connection, change: Change) -> None:
        if isinstance(change, PutPoints):
            stored = sealed.Sealer(self.keys)
            rows = [{"collection": change.collection, "point_key": r.key, "label": r.label,
                     "payload": stored(change.collection, r.key, r.payload), "checksum": r.checksum,
                     "version": r.version} for r in change.rows]
            for start in range(0, len(rows), _CHUNK):
                stmt = self._insert(points)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[points.c.collection, points.c.point_key],
                    set_={c: stmt.excluded[c] for c in ("label", "payload", "checksum", "version")})
                conn.execute(stmt, rows[start:start + _CHUNK])
        elif isinstance(change, DeletePoints):
            for start in range(0, len(change.keys), _CHUNK):
                conn.execute(points.delete().where(points.c.collection == change.collection,
                                                   points.c.point_key.in_(change.keys[start:start + _CHUNK])))
        elif isinstance(change, PutCollection):
            e = change.event
            values = {"name": e.collection, "dimension": e.dimension, "metric": e.metric, "m": e.m,
                      "ef_construction": e.ef_construction, "ef": e.ef, "kind": e.kind, "embedder": e.embedder,
                      "state": "active", "created_offset": change.offset}
            conn.execute(points.delete().where(points.c.collection == e.collection))
            stmt = self._insert(collections).values(**values)
            conn.execute(stmt.on_conflict_do_update(index_elements=[collections.c.name],
                                                    set_={k: v for k, v in values.items() if k != "name"}))
        elif isinstance(change, ConfigureCollection):
            conn.execute(collections.update().where(collections.c.name == change.name)
                         .values(m=change.m, ef_construction=change.ef_construction))
        elif isinstance(change, DropCollection):
            conn.execute(points.delete().where(points.c.collection == change.name))
            conn.execute(collections.delete().where(collections.c.name == change.name))
        elif isinstance(change, PutAliases):
            conn.execute(aliases.delete())
            if change.aliases:
                conn.execute(aliases.insert(), [{"alias_name": a, "collection_name": c} for a, c in change.aliases])
        elif isinstance(change, Rejection):
            stmt = self._insert(rejections).values(
                topic=self.topic, partition_id=change.partition, record_offset=change.offset,
                collection=change.collection, reason=change.reason, status=change.status,
                detail=change.detail[:4000], producer_id=change.producer_id)
            conn.execute(stmt.on_conflict_do_nothing())  # a replay after a restore derives the same verdict

    # Reading -----------------------------------------------------------------------
    def collection_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(collections).order_by(collections.c.name)).mappings()]

    def alias_rows(self) -> dict[str, str]:
        """Every alias, alias name -> collection name (none in a catalog older than the table, opened
        without migrating)."""
        try:
            with self.engine.connect() as conn:
                return {a: c for a, c in conn.execute(sa.select(aliases.c.alias_name, aliases.c.collection_name))}
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            if not sa.inspect(self.engine).has_table(aliases.name):
                return {}
            raise CatalogUnavailable(f"catalog {self.safe_url}: {getattr(exc, 'orig', exc)}") from exc

    def point_rows(self, collection: str) -> Iterable[dict[str, Any]]:
        """The collection's rows as stored: a sealed ``payload`` stays sealed (open it with :meth:`payload`)."""
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(points).where(points.c.collection == collection)
                                  .order_by(points.c.point_key))
            for row in result.mappings():
                yield dict(row)

    def payload(self, row: dict[str, Any]) -> str | None:
        """The clear payload text of a point row (:func:`projections.catalog.sealed.open_payload` with
        :attr:`keys`: ``Shredded``, ``DataKeyUnavailable``, ``AuthenticationFailed`` when it cannot)."""
        return sealed.open_payload(row["payload"], row["collection"], row["point_key"], self.keys)

    def log_identity(self) -> tuple[str | None, str | None] | None:
        """(cluster id, topic id) of the log this projection was built from; None: not recorded yet
        (or a catalog older than the table, opened without migrating)."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(log_identity.c.cluster_id, log_identity.c.topic_id).where(
                    log_identity.c.projection == self.projection, log_identity.c.topic == self.topic)).first()
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            try:
                missing = not sa.inspect(self.engine).has_table("vz_log_identity")
            except sa.exc.SQLAlchemyError:
                missing = False
            if missing:  # a catalog older than the table, opened without migrating
                return None
            raise CatalogUnavailable(f"catalog {self.safe_url}: {getattr(exc, 'orig', exc)}") from exc
        return None if row is None else (row[0], row[1])

    def record_log_identity(self, cluster_id: str | None, topic_id: str | None) -> None:
        """Record (or, after a rebuild from scratch, replace) the log this projection is built from."""
        with self.engine.begin() as conn:
            conn.execute(log_identity.delete().where(log_identity.c.projection == self.projection,
                                                     log_identity.c.topic == self.topic))
            conn.execute(log_identity.insert().values(projection=self.projection, topic=self.topic,
                                                      cluster_id=cluster_id, topic_id=topic_id))

    def start_verdicts(self, partitions: Iterable[int]) -> None:
        """Record, for partitions that have no mark yet, that rejections are complete from the
        position + 1 on (a projector calls this when it opens the catalog)."""
        position = self.positions()
        with self.engine.begin() as conn:
            for partition in partitions:
                stmt = self._insert(verdicts_from).values(topic=self.topic, partition_id=partition,
                                                          from_offset=position.get(partition, -1) + 1)
                conn.execute(stmt.on_conflict_do_nothing())

    def verdicts_start(self, partition: int) -> int | None:
        """The first offset of ``partition`` whose verdict the rejections table holds; None: unknown."""
        try:
            with self.engine.connect() as conn:
                value = conn.execute(sa.select(verdicts_from.c.from_offset).where(
                    verdicts_from.c.topic == self.topic, verdicts_from.c.partition_id == partition)).scalar()
        except sa.exc.OperationalError as exc:
            raise CatalogUnavailable(f"catalog {self.safe_url}: {exc.orig}") from exc
        return None if value is None else int(value)

    def rejections(self, partition: int, offsets: Sequence[int]) -> list[Rejection]:
        """The recorded rejections among ``offsets`` of ``partition``, in offset order."""
        if not offsets:
            return []
        found: list[Rejection] = []
        try:
            with self.engine.connect() as conn:
                for start in range(0, len(offsets), _CHUNK):
                    rows = conn.execute(sa.select(rejections).where(
                        rejections.c.topic == self.topic, rejections.c.partition_id == partition,
                        rejections.c.record_offset.in_(list(offsets[start:start + _CHUNK])))).mappings()
                    found.extend(_rejection(r) for r in rows)
        except sa.exc.OperationalError as exc:
            raise CatalogUnavailable(f"catalog {self.safe_url}: {exc.orig}") from exc
        return sorted(found, key=lambda r: r.offset)

    def point_count(self, collection: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(points)
                                    .where(points.c.collection == collection)).scalar_one())

    # Whole-table operations (repair, backup, restore) -------------------------------
    def export(self) -> tuple[dict[int, int], list[dict[str, Any]], list[dict[str, Any]]]:
        """Positions, collection rows and point rows of one consistent cut (see :meth:`cut`)."""
        cut = self.cut()
        return cut.positions, cut.collections, cut.points

    def rejection_rows(self) -> tuple[list[dict[str, Any]], dict[int, int]]:
        """Every recorded rejection of this topic in offset order, and from which offset each
        partition's are complete (for backups); one consistent cut (see :meth:`cut`)."""
        cut = self.cut()
        return cut.rejections, cut.verdicts_from

    def cut(self) -> CatalogCut:
        """Tracking, collections, points, rejections and verdict marks read in ONE read transaction
        with snapshot isolation, so every row belongs to the same committed state: no projector
        commit lands between two of the reads (a backup's consistent cut).

        Postgres: REPEATABLE READ (a snapshot taken at the first statement). SQLite (WAL): pysqlite
        starts no transaction for a SELECT, so each statement would read its own snapshot; an
        explicit ``BEGIN`` makes the reads one read transaction, whose snapshot is taken at its
        first read and held until it ends (writers still commit meanwhile, into the WAL).
        """
        try:
            with self.engine.connect() as conn:
                if self.engine.dialect.name == "postgresql":
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                    conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                else:
                    conn.exec_driver_sql("BEGIN")
                try:
                    return self._read_cut(conn)
                finally:
                    conn.rollback()
        except sa.exc.OperationalError as exc:
            raise CatalogUnavailable(f"catalog {self.safe_url}: {exc.orig}") from exc

    def _read_cut(self, conn: Connection) -> CatalogCut:
        positions = {int(p): int(o) for p, o in conn.execute(
            sa.select(tracking.c.partition_id, tracking.c.applied_offset).where(
                tracking.c.projection == self.projection, tracking.c.topic == self.topic))}
        colls = [dict(r) for r in conn.execute(sa.select(collections).order_by(collections.c.name)).mappings()]
        pts = [dict(r) for r in conn.execute(sa.select(points).order_by(points.c.collection,
                                                                        points.c.point_key)).mappings()]
        rows = [dict(r) for r in conn.execute(
            sa.select(rejections).where(rejections.c.topic == self.topic)
            .order_by(rejections.c.partition_id, rejections.c.record_offset)).mappings()]
        marks = {int(p): int(o) for p, o in conn.execute(
            sa.select(verdicts_from.c.partition_id, verdicts_from.c.from_offset)
            .where(verdicts_from.c.topic == self.topic))}
        names = [dict(r) for r in conn.execute(sa.select(aliases).order_by(aliases.c.alias_name)).mappings()]
        return CatalogCut(positions, colls, pts, rows, marks, names)

    def has_schema(self) -> bool:
        """Whether the catalog's tables exist (a reader opened with ``create=False`` checks this
        before reading: an empty database or schema holds no catalog)."""
        try:
            with self.engine.connect() as conn:
                return bool(sa.inspect(conn).has_table(tracking.name))
        except sa.exc.OperationalError as exc:
            raise CatalogUnavailable(f"catalog {self.safe_url}: {exc.orig}") from exc

    def replace_collection(self, name: str, created: tuple[Any, int] | None, rows: Sequence[Any]) -> None:
        """Rewrite one collection (its row and all its points) in one transaction; None drops it."""
        with self.engine.begin() as conn:
            self._write(conn, DropCollection(name))
            if created is not None:
                event, offset = created
                self._write(conn, PutCollection(event, offset))
                self._write(conn, PutPoints(name, tuple(rows)))

    def replace_aliases(self, mapping: dict[str, str]) -> None:
        """Rewrite every alias row (repair), in one transaction."""
        with self.engine.begin() as conn:
            self._write(conn, PutAliases(tuple(sorted(mapping.items()))))

    def import_rows(self, collection_rows: Sequence[dict[str, Any]], point_rows: Sequence[dict[str, Any]],
                    positions: dict[int, int], rejection_rows: Sequence[dict[str, Any]] = (),
                    verdicts_start: dict[int, int] | None = None,
                    log: tuple[str | None, str | None] | None = None,
                    alias_rows: Sequence[dict[str, Any]] = ()) -> None:
        """Replace the whole catalog with these rows and set the tracking rows exactly (restore).

        ``verdicts_start``: from which offset the rejection rows are complete, per partition;
        None (a backup without them): from the restored position + 1 on. ``log``: the (cluster id,
        topic id) the rows were built from; None (a backup without it): not known, the projector
        records the log it starts on. ``alias_rows``: ``alias_name``, ``collection_name`` (a backup
        without them: none). Sealed payloads are written as they are; clear ones are sealed when
        :attr:`keys` gives their collection a key (a clear backup restored with encryption on).
        """
        if self.keys is not None:
            stored = sealed.Sealer(self.keys)
            point_rows = [{**r, "payload": stored(r["collection"], r["point_key"], r["payload"])} for r in point_rows]
        if verdicts_start is None:
            verdicts_start = {p: o + 1 for p, o in positions.items()}
        with self.engine.begin() as conn:
            conn.execute(points.delete())
            conn.execute(collections.delete())
            conn.execute(aliases.delete())
            conn.execute(rejections.delete().where(rejections.c.topic == self.topic))
            conn.execute(verdicts_from.delete().where(verdicts_from.c.topic == self.topic))
            for start in range(0, len(rejection_rows), _CHUNK):
                conn.execute(rejections.insert(), list(rejection_rows[start:start + _CHUNK]))
            for partition, offset in verdicts_start.items():
                conn.execute(verdicts_from.insert().values(topic=self.topic, partition_id=partition,
                                                           from_offset=offset))
            conn.execute(tracking.delete().where(tracking.c.projection == self.projection,
                                                 tracking.c.topic == self.topic))
            conn.execute(log_identity.delete().where(log_identity.c.projection == self.projection,
                                                     log_identity.c.topic == self.topic))
            if log is not None:
                conn.execute(log_identity.insert().values(projection=self.projection, topic=self.topic,
                                                          cluster_id=log[0], topic_id=log[1]))
            if collection_rows:
                conn.execute(collections.insert(), list(collection_rows))
            if alias_rows:
                conn.execute(aliases.insert(), list(alias_rows))
            for start in range(0, len(point_rows), _CHUNK):
                conn.execute(points.insert(), list(point_rows[start:start + _CHUNK]))
            for partition, offset in positions.items():
                conn.execute(tracking.insert().values(projection=self.projection, topic=self.topic,
                                                      partition_id=partition, applied_offset=offset))

    def close(self) -> None:
        self.engine.dispose()


def _rejection(row: Any) -> Rejection:
    return Rejection(int(row["partition_id"]), int(row["record_offset"]), row["collection"], row["reason"],
                     int(row["status"]), row["detail"], row["producer_id"])


def dimension_lookup(settings: Settings) -> Callable[[str], int | None]:
    """Best-effort ``name -> dimension`` from the local catalog, for producer-side validation.

    Never creates a database: with no catalog yet, every lookup answers None (the projector
    still rejects a wrong dimension, by dead-lettering the event).
    """
    url = settings.resolved_catalog_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return lambda _name: None
    engine = make_engine(url)

    def lookup(name: str) -> int | None:
        try:
            with engine.connect() as conn:
                value = conn.execute(sa.select(collections.c.dimension).where(collections.c.name == name)).scalar()
        except sa.exc.SQLAlchemyError:
            return None
        return None if value is None else int(value)
    return lookup

