"""Secrets at rest and in logs: what the server hands out once is found nowhere afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.servers import ServeProcess, serving
from tests.stores import postgres_schema_url

pytestmark = pytest.mark.slow


def jwt_for(store: str, cwd: Path) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flashback_contract",
            "token",
            "--user",
            "user-acme-owner",
            "--store",
            store,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


def hand_out_secrets(served: ServeProcess, token: str) -> list[str]:
    """Create an AI key and an organization key, fail once with a bogus token; what was secret."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=served.base_url, timeout=60) as client:
        created = client.post(
            "/repo/repo-acme-main/ai/apikey", json={"name": "k", "aiType": "OPENAI"}, headers=auth
        )
        private_pem = client.post("/organization/org-acme/key", headers=auth).json()
        bogus = "bogus-token-0123456789abcdef"
        refused = client.get(
            "/organization/org-acme/key", headers={"Authorization": f"Bearer {bogus}"}
        )
    assert created.status_code == 201 and refused.status_code == 401
    pem_lines = [line for line in private_pem.splitlines() if line and "-----" not in line]
    # The secret, the bearer tokens, and every line of the private key's base64 body.
    return [created.json()["secret"], token, bogus, *pem_lines]


def assert_absent(secrets: list[str], where: str, text: str | bytes) -> None:
    haystack = text.encode() if isinstance(text, str) else text
    for secret in secrets:
        assert secret.encode() not in haystack, f"{secret[:12]}... found in {where}"


def test_sqlite_files_and_server_output_hold_no_secret(tmp_path: Path) -> None:
    database = tmp_path / "at-rest.sqlite3"
    store = f"sqlite:///{database}"
    token = jwt_for(store, tmp_path)
    with serving("--store", store, "--log-level", "debug", cwd=tmp_path) as served:
        secrets = hand_out_secrets(served, token)
        # Read while the server runs: committed data may still be in the write-ahead log.
        # The database, its WAL, and the sessions' files beside it (list, journal, overrides).
        files = {
            str(p.relative_to(tmp_path)): p.read_bytes()
            for p in tmp_path.rglob("at-rest.sqlite3*")
            if p.is_file()
        }
        files.update(
            {
                str(p.relative_to(tmp_path)): p.read_bytes()
                for p in tmp_path.glob("at-rest.sqlite3.sessions/*")
                if p.is_file()
            }
        )
    assert "at-rest.sqlite3-wal" in files or "at-rest.sqlite3" in files
    for name, content in files.items():
        assert_absent(secrets, name, content)
    assert_absent(secrets, "the server's output", served.output())


def test_postgresql_tables_and_server_output_hold_no_secret(tmp_path: Path) -> None:
    with postgres_schema_url() as store:
        token = jwt_for(store, tmp_path)
        with serving("--store", store, "--workers", "2", cwd=tmp_path) as served:
            secrets = hand_out_secrets(served, token)
        engine = sa.create_engine(sa.make_url(store).set(drivername="postgresql+psycopg"))
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            rows = [
                str(row)
                for table in tables
                for row in conn.execute(sa.text(f'SELECT CAST(t AS text) FROM "{table}" t'))
            ]
        engine.dispose()
    assert "repo_ai_api_keys" in tables and len(rows) > 10
    assert_absent(secrets, "the PostgreSQL tables", "\n".join(rows))
    assert_absent(secrets, "the server's output", served.output())
