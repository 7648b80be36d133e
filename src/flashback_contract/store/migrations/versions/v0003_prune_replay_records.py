"""Index replay records by acceptance time: old ones are pruned by it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_node_signatures_accepted_at", "node_signatures", ["accepted_at"])


def downgrade() -> None:
    op.drop_index("ix_node_signatures_accepted_at", "node_signatures")
