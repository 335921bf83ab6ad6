"""Log identity: the cluster id and topic id a projection was built from.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vz_log_identity",
        sa.Column("projection", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("cluster_id", sa.String(64), nullable=True),
        sa.Column("topic_id", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("vz_log_identity")
