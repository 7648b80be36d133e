"""Read state per user: who has read which system event.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

The documentation's showUnread is per current user; system_events.show_unread, one flag for
everybody, is no longer read or written (it stays, always false, for older servers' rows).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "system_event_reads",
        sa.Column("event_id", sa.Integer, sa.ForeignKey("system_events.id"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("system_event_reads")
