"""The catalog's tables (SQLAlchemy Core). Alembic migrations in ``infra/migrations`` create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

collections = sa.Table(
    "vz_collections", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("dimension", sa.Integer, nullable=False),
    sa.Column("metric", sa.String(16), nullable=False),
    sa.Column("m", sa.Integer, nullable=False),
    sa.Column("ef_construction", sa.Integer, nullable=False),
    sa.Column("ef", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("embedder", sa.Text, nullable=True),
    sa.Column("state", sa.String(16), nullable=False, server_default="active"),
    sa.Column("created_offset", sa.BigInteger, nullable=False),
)

# Collection aliases (Qdrant's), alias -> collection: replaced whole by every AliasesChanged; a
# dropped collection's go with its row.
aliases = sa.Table(
    "vz_aliases", metadata,
    sa.Column("alias_name", sa.String(255), primary_key=True),
    sa.Column("collection_name", sa.String(255), nullable=False),
)

points = sa.Table(
    "vz_points", metadata,
    sa.Column("collection", sa.String(255), primary_key=True),
    sa.Column("point_key", sa.String(600), primary_key=True),  # schemas.ids.catalog_key
    sa.Column("label", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=True),  # canonical JSON
    sa.Column("checksum", sa.String(16), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),  # offset of the last event that wrote it
    sa.Index("ix_vz_points_label", "collection", "label"),
)

tracking = sa.Table(
    "vz_tracking", metadata,
    sa.Column("projection", sa.String(255), primary_key=True),
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("partition_id", sa.Integer, primary_key=True),
    sa.Column("applied_offset", sa.BigInteger, nullable=False),
)

# The projection's verdict on every record it refused (dead-lettered), by offset: written in
# the same transaction as the tracking row that covers it, so a write's outcome survives
# restarts and answers ``wait`` for any offset at or below the tracking row.
# From which offset of each partition the rejections table is complete: set when a projector
# first opens the catalog (0 for a new one; the position + 1 for a catalog that predates the
# table), so "no row" means "applied" only at or past it.
verdicts_from = sa.Table(
    "vz_verdicts_from", metadata,
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("partition_id", sa.Integer, primary_key=True),
    sa.Column("from_offset", sa.BigInteger, nullable=False),
)

rejections = sa.Table(
    "vz_rejections", metadata,
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("partition_id", sa.Integer, primary_key=True),
    sa.Column("record_offset", sa.BigInteger, primary_key=True),
    sa.Column("collection", sa.String(255), nullable=True),  # the record's key; None when it had none
    sa.Column("reason", sa.String(64), nullable=False),  # the dead letter's reason code
    sa.Column("status", sa.Integer, nullable=False),  # the HTTP status the same mistake gets up front
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("producer_id", sa.String(255), nullable=True),  # None when the record did not decode
)

# The log this projection was built from (consumers.logid): recorded when a projector first
# reads the topic, checked at every start; a different one stops the projection from serving.
log_identity = sa.Table(
    "vz_log_identity", metadata,
    sa.Column("projection", sa.String(255), primary_key=True),
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("cluster_id", sa.String(64), nullable=True),
    sa.Column("topic_id", sa.String(64), nullable=True),
)
