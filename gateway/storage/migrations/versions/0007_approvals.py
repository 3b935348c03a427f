"""Create approval_requests (tool calls held for a human) and tool_suspensions (the kill switch).

Revision ID: 0007
Revises: 0006
Created: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("tool_name", sa.String(), nullable=False),
        sa.Column("tool_call_id", sa.String(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("canonical_arguments", sa.Text(), nullable=False),
        sa.Column("binding_hash", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("key_name", sa.String(), nullable=False),
        sa.Column("team_id", sa.String(), nullable=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("policy_sha256", sa.String(), nullable=False),
        sa.Column("rule_id", sa.String(), nullable=False),
        sa.Column("risk", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("approver_roles", sa.JSON(), nullable=False),
        sa.Column("approver_teams", sa.JSON(), nullable=False),
        sa.Column("on_timeout", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decided_by_name", sa.String(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("executed_request_id", sa.String(), nullable=True),
    )
    for column in ("status", "tool_call_id", "binding_hash", "key_id", "created_at", "expires_at"):
        op.create_index(f"ix_approval_requests_{column}", "approval_requests", [column])
    op.create_table(
        "tool_suspensions",
        sa.Column("scope", sa.String(), primary_key=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("suspended_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tool_suspensions")
    op.drop_table("approval_requests")  # drops its indexes with it
