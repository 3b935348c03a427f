"""Drop the usage_records indexes on model and prompt_id: no query filters on either column.

Every index is written on every insert, and usage_records takes one insert per model call. Under callgrind, SQLite's
instructions per shipped row (64-row statements, 4,992 rows) went from 20,900 to 16,900 without these two. Reports
that group by model or prompt read the rows of a time range through the created_at index, as they did before.

Revision ID: 0008
Revises: 0007
Created: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_usage_records_model", table_name="usage_records")
    op.drop_index("ix_usage_records_prompt_id", table_name="usage_records")


def downgrade() -> None:
    op.create_index("ix_usage_records_prompt_id", "usage_records", ["prompt_id"])
    op.create_index("ix_usage_records_model", "usage_records", ["model"])
