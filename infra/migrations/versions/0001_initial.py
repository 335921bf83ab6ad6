"""Initial catalog: collections, points, tracking.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vz_collections",
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
    op.create_table(
        "vz_points",
        sa.Column("collection", sa.String(255), primary_key=True),
        sa.Column("point_key", sa.String(600), primary_key=True),
        sa.Column("label", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("checksum", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_vz_points_label", "vz_points", ["collection", "label"])
    op.create_table(
        "vz_tracking",
        sa.Column("projection", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition_id", sa.Integer, primary_key=True),
        sa.Column("applied_offset", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vz_tracking")
    op.drop_index("ix_vz_points_label", "vz_points")
    op.drop_table("vz_points")
    op.drop_table("vz_collections")
