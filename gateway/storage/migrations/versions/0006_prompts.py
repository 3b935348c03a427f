"""Create prompt_versions and prompt_labels (the prompt registry); usage records name the prompt version used.

Revision ID: 0006
Revises: 0005
Created: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompt_versions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("prompt_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("content_sha256", sa.String(), nullable=False),
        sa.Column("commit_message", sa.String(), nullable=True),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("prompt_id", "version"),
    )
    op.create_index("ix_prompt_versions_prompt_id", "prompt_versions", ["prompt_id"])
    op.create_table(
        "prompt_labels",
        sa.Column("prompt_id", sa.String(), primary_key=True),
        sa.Column("label", sa.String(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_prompt_labels_updated_at", "prompt_labels", ["updated_at"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("prompt_id", sa.String(), nullable=True))
        batch.add_column(sa.Column("prompt_version", sa.Integer(), nullable=True))
    op.create_index("ix_usage_records_prompt_id", "usage_records", ["prompt_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_records_prompt_id", "usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("prompt_version")
        batch.drop_column("prompt_id")
    op.drop_table("prompt_labels")
    op.drop_table("prompt_versions")
