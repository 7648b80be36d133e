"""AI API key secrets: keep their SHA-256 instead of a ciphertext.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

A ciphertext cannot be turned into the secret's hash without its key (by default a key that
lived in one process only), and the mock never needs an old secret again: an existing key gets
the SHA-256 of its ciphertext, a value no secret hashes to.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repo_ai_api_keys") as batch:
        batch.add_column(sa.Column("secret_sha256", sa.String(64)))
    keys = sa.table(
        "repo_ai_api_keys",
        sa.column("id", sa.String),
        sa.column("secret_encrypted", sa.LargeBinary),
        sa.column("secret_sha256", sa.String),
    )
    connection = op.get_bind()
    for row in connection.execute(sa.select(keys.c.id, keys.c.secret_encrypted)).all():
        connection.execute(
            keys.update()
            .where(keys.c.id == row.id)
            .values(secret_sha256=hashlib.sha256(bytes(row.secret_encrypted)).hexdigest())
        )
    with op.batch_alter_table("repo_ai_api_keys") as batch:
        batch.alter_column("secret_sha256", existing_type=sa.String(64), nullable=False)
        batch.drop_column("secret_encrypted")


def downgrade() -> None:
    # The hash cannot become a ciphertext again: old keys get an empty one.
    with op.batch_alter_table("repo_ai_api_keys") as batch:
        batch.add_column(sa.Column("secret_encrypted", sa.LargeBinary))
    op.execute(
        sa.text("UPDATE repo_ai_api_keys SET secret_encrypted = :empty").bindparams(empty=b"")
    )
    with op.batch_alter_table("repo_ai_api_keys") as batch:
        batch.alter_column("secret_encrypted", existing_type=sa.LargeBinary, nullable=False)
        batch.drop_column("secret_sha256")
