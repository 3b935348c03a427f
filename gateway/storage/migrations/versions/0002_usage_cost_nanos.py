"""Add usage_records.cost_nanos: the exact cost in integer nano-USD, so report sums are exact.

cost_usd stays (a float copy, for people reading the table by hand). Existing rows get their
cost_nanos from cost_usd, rounded to the nearest nano.

Revision ID: 0002
Revises: 0001
Created: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cost_nanos", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    op.execute("UPDATE usage_records SET cost_nanos = CAST(ROUND(cost_usd * 1000000000) AS BIGINT)")


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cost_nanos")
