"""Every store adapter, for tests that must hold on each: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from flashback_contract.store import Store, open_store

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
ADAPTERS = ["memory", "sqlite", "postgresql"]


def postgres_url() -> str:
    return os.environ.get("FLASHBACK_TEST_PG", DEFAULT_PG)


def require_postgres() -> str:
    """The PostgreSQL URL; skip (fail under CI=true) when the server is unreachable."""
    url = postgres_url()
    try:
        engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as exc:
        reason = f"PostgreSQL unreachable at {url} (set FLASHBACK_TEST_PG): {exc.orig}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A store URL confined to a fresh schema, dropped afterwards."""
    base = sa.make_url(require_postgres()).set(drivername="postgresql+psycopg")
    schema = f"fbtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def open_adapter(kind: str, tmp_path: Path) -> Iterator[Store]:
    if kind == "memory":
        store = open_store("memory://")
        yield store
        store.close()
    elif kind == "sqlite":
        store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        yield store
        store.close()
    else:
        with postgres_schema_url() as url:
            store = open_store(url)
            try:
                yield store
            finally:
                store.close()
