"""Create eval_runs (stored eval results, one row per run and target, read by the promotion gate); usage records
name the eval run that made the call (the x-gateway-eval-run header), with a partial index over the calls
that have one.

Revision ID: 0010
Revises: 0009
Created: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("run_id", sa.String(), primary_key=True),
        sa.Column("target_id", sa.String(), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("suite_name", sa.String(), nullable=False),
        sa.Column("suite_path", sa.String(), nullable=False),
        sa.Column("suite_sha256", sa.String(), nullable=False),
        sa.Column("target_kind", sa.String(), nullable=False),
        sa.Column("prompt_id", sa.String(), nullable=True),
        sa.Column("prompt_version", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("git_commit", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("run_status", sa.String(), nullable=False),
        sa.Column("pass_rate", sa.Float(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("cost_usd_target", sa.Float(), nullable=False),
        sa.Column("cost_usd_judge", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
    )
    op.create_index("ix_eval_runs_suite_sha256", "eval_runs", ["suite_sha256"])
    op.create_index("ix_eval_runs_created_at", "eval_runs", ["created_at"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("eval_run_id", sa.String(), nullable=True))
    # Partial: the calls outside eval runs (nearly all) add no index entry to the hot path's inserts.
    where = sa.text("eval_run_id IS NOT NULL")
    op.create_index(
        "ix_usage_records_eval_run_id", "usage_records", ["eval_run_id"], sqlite_where=where, postgresql_where=where
    )


def downgrade() -> None:
    op.drop_index("ix_usage_records_eval_run_id", "usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("eval_run_id")
    op.drop_table("eval_runs")
