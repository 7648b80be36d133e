"""An index of each repository's active AI keys.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Deleted keys stay as rows (soft delete), so listing a repository's keys through the index on
repo_id alone walked every key the repository ever had. The partial index holds the active
ones, in creation order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ACTIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "repo_ai_api_keys_active",
        "repo_ai_api_keys",
        ["repo_id", "seq"],
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("repo_ai_api_keys_active", table_name="repo_ai_api_keys")
