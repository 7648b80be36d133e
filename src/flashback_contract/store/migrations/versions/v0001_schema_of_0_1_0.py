"""The schema flashback-contract 0.1.0 created on first use, before migrations existed.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 0.1.0 stored timezone-aware datetimes as fixed-width ISO 8601 text.
DATETIME = sa.String(40)


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("role", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("token", sa.String(512), unique=True),
    )
    op.create_table(
        "repositories",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
    )
    op.create_table(
        "organization_keys",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "org_id", sa.String(128), sa.ForeignKey("organizations.id"), nullable=False, index=True
        ),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
    )
    op.create_table(
        "node_keys",
        sa.Column(
            "key_id",
            sa.String(128),
            sa.ForeignKey("organization_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("node_id", sa.String(128), primary_key=True),
    )
    op.create_table(
        "nodes",
        sa.Column("ip", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("region", sa.String(128), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("status", sa.String(128), nullable=False),
        sa.Column("services", sa.BigInteger),
        sa.Column("updated_at", DATETIME, nullable=False),
    )
    op.create_table(
        "node_signatures",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("accepted_at", DATETIME, nullable=False),
    )
    op.create_table(
        "repo_ai_api_keys",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "repo_id", sa.String(128), sa.ForeignKey("repositories.id"), nullable=False, index=True
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255)),
        sa.Column("ai_type", sa.String(16), nullable=False),
        sa.Column("secret_encrypted", sa.LargeBinary, nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.Column("deleted_at", DATETIME),
    )
    op.create_table(
        "system_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("timestamp", DATETIME, nullable=False),
        sa.Column("context", sa.Integer, nullable=False),
        sa.Column("event", sa.Integer, nullable=False),
        sa.Column("org_id", sa.String(128), nullable=False, index=True),
        sa.Column("user_id", sa.String(128)),
        sa.Column("context_id", sa.String(128), nullable=False),
        sa.Column("json_data", sa.Text),
        sa.Column("workspace_id", sa.String(128)),
        sa.Column("show_unread", sa.Boolean, nullable=False),
    )
    op.create_table(
        "mock_settings",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "mock_settings",
        "system_events",
        "repo_ai_api_keys",
        "node_signatures",
        "nodes",
        "node_keys",
        "organization_keys",
        "repositories",
        "users",
        "organizations",
    ):
        op.drop_table(table)
