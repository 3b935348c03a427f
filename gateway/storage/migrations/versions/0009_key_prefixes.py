"""Create key_prefixes: every visible prefix each key has had, so a policy naming a key by the prefix it had
when the policy was written keeps applying to the same key (by id) after the key is rotated. Existing keys get
their current prefix.

Revision ID: 0009
Revises: 0008
Created: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_prefixes",
        sa.Column("prefix", sa.String(), primary_key=True),
        sa.Column("key_id", sa.String(), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_key_prefixes_key_id", "key_prefixes", ["key_id"])
    # Two existing keys could share a prefix (1 in 2^36 per pair): keep the older key's, as get_key resolves it.
    op.execute(
        "INSERT INTO key_prefixes (prefix, key_id, created_at) "
        "SELECT prefix, id, created_at FROM api_keys AS k WHERE NOT EXISTS "
        "(SELECT 1 FROM api_keys AS o WHERE o.prefix = k.prefix"
        " AND (o.created_at < k.created_at OR (o.created_at = k.created_at AND o.id < k.id)))"
    )


def downgrade() -> None:
    op.drop_table("key_prefixes")
