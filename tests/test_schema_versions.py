"""The versioned schema: new databases at the newest revision, old ones migrated, newer refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from flashback_contract import Settings, create_app
from flashback_contract.store import open_store
from flashback_contract.store.sql import metadata
from flashback_contract.store.versioning import (
    FIRST_REVISION,
    SchemaVersionError,
    _config,
    head_revision,
)
from tests.stores import postgres_schema_url

KINDS = ["sqlite", "postgresql"]
SCHEMA_0_1_0 = [
    statement.strip()
    for statement in "\n".join(
        line
        for line in (Path(__file__).parent / "data/schema-0.1.0.sqlite.sql")
        .read_text()
        .splitlines()
        if not line.startswith("--")
    ).split(";")
    if statement.strip()
]


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of that kind (PostgreSQL: a schema of its own)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'versions.sqlite3'}"
    else:
        with postgres_schema_url() as url:
            yield url


@contextmanager
def connection(url: str) -> Iterator[sa.Connection]:
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(parsed)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    with connection(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def write_a_0_1_0_database(url: str, keep_version_table: bool) -> None:
    """The first revision's tables holding data as 0.1.0 wrote it.

    0.1.0 kept no version table; with ``keep_version_table`` the database is one stamped
    at the first revision instead.
    """
    with connection(url) as conn:
        if conn.dialect.name == "sqlite" and not keep_version_table:
            # Byte for byte what 0.1.0 created.
            for statement in SCHEMA_0_1_0:
                conn.exec_driver_sql(statement)
        else:
            command.upgrade(_config(conn), FIRST_REVISION)
            if not keep_version_table:
                conn.execute(sa.text("DROP TABLE alembic_version"))
        rows = {
            "organizations": [{"id": "org-acme", "name": "Acme Corp"}],
            "users": [
                {
                    "id": "user-acme-owner",
                    "org_id": "org-acme",
                    "role": 0xFF,  # OWNER
                    "name": "Olivia Owner",
                    "email": "owner@acme.test",
                    "token": "old-owner-token",
                }
            ],
            "repositories": [{"id": "repo-acme-main", "org_id": "org-acme", "name": "main"}],
            "organization_keys": [
                {
                    "id": "orgkey-old",
                    "org_id": "org-acme",
                    "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                    "created_at": "2026-01-01T09:00:00.000000+00:00",
                }
            ],
            "repo_ai_api_keys": [
                {
                    "id": "aikey-old",
                    "repo_id": "repo-acme-main",
                    "name": "Kept from 0.1.0",
                    "key": "FB_AI_old",
                    "ai_type": "OPENAI",
                    "secret_encrypted": b"gAAAAAB-a-fernet-token",
                    "created_at": "2026-01-02T09:00:00.000000+00:00",
                    "deleted_at": None,
                }
            ],
            "system_events": [
                {
                    "timestamp": "2026-01-02T09:00:00.000000+00:00",
                    "context": 12,  # aillmapikey
                    "event": 0,
                    "org_id": "org-acme",
                    "user_id": "user-acme-owner",
                    "context_id": "aikey-old",
                    "json_data": None,
                    "workspace_id": None,
                    "show_unread": False,
                }
            ],
            "node_signatures": [
                {"digest": "ab" * 32, "accepted_at": "2026-01-02T09:00:00.000000+00:00"}
            ],
        }
        tables = sa.MetaData()
        tables.reflect(conn)
        for name, values in rows.items():
            conn.execute(tables.tables[name].insert(), values)


def test_the_first_revision_is_exactly_the_schema_0_1_0_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'first.sqlite3'}"
    with connection(url) as conn:
        command.upgrade(_config(conn), FIRST_REVISION)
        created = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'alembic_version'"
        )
        statements = sorted(sql.strip() for (sql,) in created)

    assert statements == sorted(SCHEMA_0_1_0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_database_is_built_by_the_migrations_to_the_adapters_tables(
    kind: str, tmp_path: Path
) -> None:
    with database_url(kind, tmp_path) as url:
        open_store(url).close()

        assert revision_of(url) == head_revision()
        with connection(url) as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []


@pytest.mark.parametrize("keep_version_table", [False, True], ids=["0.1.0", "first-revision"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_server_migrates_an_old_database_and_its_data_is_intact(
    kind: str, keep_version_table: bool, tmp_path: Path
) -> None:
    with database_url(kind, tmp_path) as url:
        write_a_0_1_0_database(url, keep_version_table)
        assert revision_of(url) == (FIRST_REVISION if keep_version_table else None)

        store = open_store(url)
        with create_app(Settings(store_url=url), store=store).test_client() as client:
            old_token = {"Authorization": "Bearer old-owner-token"}
            ai_keys = client.get("/repo/repo-acme-main/ai/apikey", headers=old_token)
            org_keys = client.get("/organization/org-acme/key", headers=old_token)
            events = client.post(
                "/systemevent",
                json={
                    "from_timestamp": "2026-01-01T00:00:00Z",
                    "to_timestamp": "2026-01-03T00:00:00Z",
                },
                headers=old_token,
            )
            renamed = client.put(
                "/repo/repo-acme-main/ai/apikey/aikey-old",
                json={"name": "Renamed after the upgrade"},
                headers=old_token,
            )
        store.close()

        assert [(k["id"], k["name"]) for k in ai_keys.json()["apiKeys"]] == [
            ("aikey-old", "Kept from 0.1.0")
        ]
        assert [k["id"] for k in org_keys.json()["data"]] == ["orgkey-old"]
        assert [e["contextId"] for e in events.json()["events"]] == ["aikey-old"]
        assert renamed.status_code == 200
        assert revision_of(url) == head_revision()
        with connection(url) as conn:
            (secret_hash,) = conn.execute(
                sa.text("SELECT secret_sha256 FROM repo_ai_api_keys WHERE id = 'aikey-old'")
            ).one()
        assert len(secret_hash) == 64


@pytest.mark.parametrize("kind", KINDS)
def test_opening_a_store_twice_migrates_once(kind: str, tmp_path: Path) -> None:
    with database_url(kind, tmp_path) as url:
        open_store(url).close()
        with connection(url) as conn:
            conn.execute(sa.text("INSERT INTO organizations (id, name) VALUES ('o', 'O')"))

        open_store(url).close()

        with connection(url) as conn:
            assert conn.execute(sa.text("SELECT name FROM organizations")).scalars().all() == ["O"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_database_from_a_newer_version_is_refused(kind: str, tmp_path: Path) -> None:
    with database_url(kind, tmp_path) as url:
        open_store(url).close()
        with connection(url) as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))

        with pytest.raises(SchemaVersionError, match=r"'9999'.*written by a newer version"):
            open_store(url)
        assert revision_of(url) == "9999"


def test_serve_refuses_a_newer_database_with_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    open_store(url).close()
    with connection(url) as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))

    result = subprocess.run(
        [sys.executable, "-m", "flashback_contract", "serve", "--store", url, "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "schema revision '9999'" in result.stderr
    assert "written by a newer version" in result.stderr
    assert "Traceback" not in result.stderr
