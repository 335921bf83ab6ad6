"""Rejections: the projection's verdict on each dead-lettered record, by offset, and from
which offset of each partition that record is complete.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vz_rejections",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition_id", sa.Integer, primary_key=True),
        sa.Column("record_offset", sa.BigInteger, primary_key=True),
        sa.Column("collection", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("producer_id", sa.String(255), nullable=True),
    )
    op.create_table(
        "vz_verdicts_from",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition_id", sa.Integer, primary_key=True),
        sa.Column("from_offset", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vz_verdicts_from")
    op.drop_table("vz_rejections")
