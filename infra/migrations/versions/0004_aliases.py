"""Collection aliases: alias name -> collection name.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vz_aliases",
        sa.Column("alias_name", sa.String(255), primary_key=True),
        sa.Column("collection_name", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vz_aliases")
