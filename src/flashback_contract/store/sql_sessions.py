"""Sessions in the database, shared by every server process on the same SQLite file or PostgreSQL.

The catalog, journal and overrides live in control tables; each session's data lives in a SQLite
file copied from a seeded template, or in a PostgreSQL schema of its own. A process caches the
stores it opened and reopens one when the catalog says the session was created anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from flashback_contract.store.base import Store
from flashback_contract.store.sessions import (
    JournalEntry,
    JournalQuery,
    Override,
    Seeder,
    SessionInfo,
    SessionLimitReached,
    SessionPolicy,
    params_match,
)
from flashback_contract.store.sql import SqlStore, UtcDateTime, create_engine

# The default state's journal and overrides carry this session name.
DEFAULT = ""

control_metadata = sa.MetaData()
mock_sessions = sa.Table(
    "mock_sessions",
    control_metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_used_at", UtcDateTime, nullable=False),
    sa.Column("request_count", sa.Integer, nullable=False),
)
mock_requests = sa.Table(
    "mock_requests",
    control_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session", sa.String(64), nullable=False),
    sa.Column("operation_id", sa.String(128)),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("entry", sa.Text, nullable=False),
    sa.Index("mock_requests_by_session", "session", "id"),
)
mock_overrides = sa.Table(
    "mock_overrides",
    control_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session", sa.String(64), nullable=False),
    sa.Column("operation_id", sa.String(128), nullable=False),
    # NULL: until cleared.
    sa.Column("remaining", sa.Integer),
    sa.Column("override", sa.Text, nullable=False),
    sa.Index("mock_overrides_by_operation", "session", "operation_id"),
)


def _key(session: str | None) -> str:
    return DEFAULT if session is None else session


def _session(key: str) -> str | None:
    return None if key == DEFAULT else key


class _SessionData(Protocol):
    """Where sessions' data lives: SQLite files from a template, or PostgreSQL schemas."""

    def create(self, name: str) -> None: ...
    def open(self, name: str) -> Store: ...
    def remove(self, name: str) -> None: ...
    def close(self) -> None: ...


class _SqliteFiles:
    """A SQLite file per session, copied from a template seeded when the server starts."""

    def __init__(self, directory: Path, seed: Seeder) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._template = directory / "template.sqlite3"
        # Written aside, then renamed: a process copying the template never sees half of one.
        partial = directory / f"template-{uuid.uuid4().hex}.partial"
        store = SqlStore(f"sqlite:///{partial}")
        with store.transaction() as uow:
            seed(uow)
        store.close()
        os.replace(partial, self._template)

    def _path(self, name: str) -> Path:
        return self._dir / f"session-{name}.sqlite3"

    def create(self, name: str) -> None:
        self.remove(name)
        shutil.copyfile(self._template, self._path(name))

    def open(self, name: str) -> Store:
        # A copy of the template, which has every table: no schema check on the hot path.
        return SqlStore(f"sqlite:///{self._path(name)}", create_tables=False)

    def remove(self, name: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.unlink(f"{self._path(name)}{suffix}")

    def close(self) -> None:
        """The files stay: the sessions outlive this process."""


class _SqliteInMemory:
    """``sqlite:///:memory:``: one process, a fresh in-memory database per session."""

    def __init__(self, seed: Seeder) -> None:
        self._seed = seed
        self._pending: dict[str, Store] = {}

    def create(self, name: str) -> None:
        store = SqlStore("sqlite:///:memory:")
        with store.transaction() as uow:
            self._seed(uow)
        self._pending[name] = store

    def open(self, name: str) -> Store:
        return self._pending.pop(name)

    def remove(self, name: str) -> None:
        self._pending.pop(name, None)

    def close(self) -> None:
        for store in self._pending.values():
            store.close()


class _PostgresSchemas:
    """A PostgreSQL schema per session, named after the server's own schema and the session."""

    def __init__(self, url: str, engine: Engine, seed: Seeder) -> None:
        self._url = url
        self._engine = engine
        self._seed = seed
        with engine.connect() as conn:
            self._base = str(conn.execute(sa.text("SELECT current_schema()")).scalar_one())

    def _schema(self, name: str) -> str:
        # Session names may hold '.' and '-' and reach 64 characters; identifiers stop at 63.
        return f"{self._base[:40]}_s{hashlib.sha256(name.encode()).hexdigest()[:16]}"

    def create(self, name: str) -> None:
        self.remove(name)
        with self._engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self._schema(name)}"'))
        store = self.open(name)
        with store.transaction() as uow:
            self._seed(uow)

    def open(self, name: str) -> Store:
        return SqlStore(self._url, engine=self._engine, schema=self._schema(name))

    def remove(self, name: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self._schema(name)}" CASCADE'))

    def close(self) -> None:
        """The schemas stay: the sessions outlive this process."""


def _control_engine(store_url: str) -> tuple[Engine, Path | None]:
    """The engine of the control tables, and the SQLite sessions directory (None otherwise)."""
    parsed = sa.make_url(store_url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(store_url), None
    database = parsed.database or ""
    if database in ("", ":memory:"):
        return create_engine("sqlite:///:memory:"), None
    directory = Path(f"{database}.sessions")
    directory.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{directory / 'control.sqlite3'}")

    @sa.event.listens_for(engine, "connect")
    def _journal_speed(dbapi_connection: Any, _record: Any) -> None:
        # A test journal need not survive a power cut; every request writes to it.
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    return engine, directory


class SqlSessions:
    """Sessions, journal and overrides in SQL, visible to every process on the same database."""

    def __init__(self, default: Store, store_url: str, seed: Seeder, policy: SessionPolicy) -> None:
        self.policy = policy
        self._default = default
        self._engine, directory = _control_engine(store_url)
        control_metadata.create_all(self._engine)
        self._postgres = self._engine.dialect.name == "postgresql"
        self._data: _SessionData
        if directory is not None:
            self._data = _SqliteFiles(directory, seed)
        elif self._postgres:
            self._data = _PostgresSchemas(store_url, self._engine, seed)
        else:
            self._data = _SqliteInMemory(seed)
        # name -> (created_at of the session the store belongs to, store)
        self._open: dict[str, tuple[datetime, Store]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def _control(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def _lock_catalog(self, conn: Connection) -> None:
        # SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL needs a lock.
        if self._postgres:
            conn.execute(sa.text("LOCK TABLE mock_sessions IN EXCLUSIVE MODE"))

    # -- sessions ----------------------------------------------------------------
    def use(self, name: str | None, now: datetime) -> Store:
        if name is None:
            return self._default
        with self._control() as conn:
            created_at = self._touch(conn, name, now)
        if created_at is None:
            created_at = self._create(name, now)
        with self._lock:
            cached = self._open.get(name)
            if cached is not None and cached[0] == created_at:
                return cached[1]
            if cached is not None:
                cached[1].close()
            store = self._data.open(name)
            self._open[name] = (created_at, store)
            return store

    def _touch(self, conn: Connection, name: str, now: datetime) -> datetime | None:
        """Count a request of a live session; its creation time, or None if it is not live."""
        created_at: datetime | None = conn.execute(
            mock_sessions.update()
            .where(
                mock_sessions.c.name == name,
                # An expired session nothing swept yet is not live: its next use starts anew.
                mock_sessions.c.last_used_at > now - self.policy.ttl,
            )
            .values(last_used_at=now, request_count=mock_sessions.c.request_count + 1)
            .returning(mock_sessions.c.created_at)
        ).scalar()
        return created_at

    def _create(self, name: str, now: datetime) -> datetime:
        with self._control() as conn:
            self._lock_catalog(conn)
            existing = self._touch(conn, name, now)
            if existing is not None:  # another process created it meanwhile
                return existing
            self._expire(conn, now)
            live = conn.execute(sa.select(sa.func.count()).select_from(mock_sessions)).scalar_one()
            if live >= self.policy.max_sessions:
                raise SessionLimitReached(name)
            self._data.create(name)
            conn.execute(
                mock_sessions.insert().values(
                    name=name, created_at=now, last_used_at=now, request_count=1
                )
            )
            self._forget_rows(conn, name)
        return now

    def _expire(self, conn: Connection, now: datetime) -> None:
        idle = conn.execute(
            sa.select(mock_sessions.c.name).where(
                mock_sessions.c.last_used_at <= now - self.policy.ttl
            )
        ).scalars()
        for name in list(idle):
            self._remove(conn, name)

    def _remove(self, conn: Connection, name: str) -> None:
        conn.execute(mock_sessions.delete().where(mock_sessions.c.name == name))
        self._forget_rows(conn, name)
        with self._lock:
            cached = self._open.pop(name, None)
        if cached is not None:
            cached[1].close()
        self._data.remove(name)

    @staticmethod
    def _forget_rows(conn: Connection, name: str) -> None:
        conn.execute(mock_requests.delete().where(mock_requests.c.session == name))
        conn.execute(mock_overrides.delete().where(mock_overrides.c.session == name))

    def sessions(self, now: datetime) -> list[SessionInfo]:
        with self._control() as conn:
            self._lock_catalog(conn)
            self._expire(conn, now)
            rows = conn.execute(
                mock_sessions.select().order_by(mock_sessions.c.created_at, mock_sessions.c.name)
            ).all()
        return [SessionInfo(r.name, r.created_at, r.last_used_at, r.request_count) for r in rows]

    def drop(self, name: str) -> bool:
        with self._control() as conn:
            self._lock_catalog(conn)
            known = conn.execute(
                sa.select(mock_sessions.c.name).where(mock_sessions.c.name == name)
            ).first()
            if known is None:
                return False
            self._remove(conn, name)
        return True

    # -- journal -------------------------------------------------------------------
    def record(self, entry: JournalEntry) -> None:
        size = self.policy.journal_size
        if size <= 0:
            return
        session = _key(entry["session"])
        t = mock_requests
        with self._control() as conn:
            conn.execute(
                t.insert().values(
                    session=session,
                    operation_id=entry["operationId"],
                    method=entry["method"],
                    status=entry["status"],
                    entry=json.dumps(entry),
                )
            )
            # The oldest entry beyond the bound, found through the (session, id) index.
            oldest_kept = (
                sa.select(t.c.id)
                .where(t.c.session == session)
                .order_by(t.c.id.desc())
                .offset(size - 1)
                .limit(1)
                .scalar_subquery()
            )
            conn.execute(t.delete().where(t.c.session == session, t.c.id < oldest_kept))

    def requests(self, query: JournalQuery) -> list[JournalEntry]:
        t = mock_requests
        conditions = []
        if not query.all_sessions:
            conditions.append(t.c.session == _key(query.session))
        if query.operation_id is not None:
            conditions.append(t.c.operation_id == query.operation_id)
        if query.method is not None:
            conditions.append(t.c.method == query.method)
        if query.status is not None:
            conditions.append(t.c.status == query.status)
        with self._control() as conn:
            rows = conn.execute(
                sa.select(t.c.id, t.c.entry)
                .where(*conditions)
                .order_by(t.c.id.desc())
                .limit(query.limit)
            ).all()
        return [{**json.loads(row.entry), "id": row.id} for row in rows]

    def clear_requests(self, session: str | None, all_sessions: bool) -> None:
        with self._control() as conn:
            delete = mock_requests.delete()
            if not all_sessions:
                delete = delete.where(mock_requests.c.session == _key(session))
            conn.execute(delete)

    # -- overrides -----------------------------------------------------------------
    def add_override(self, session: str | None, override: Override) -> Override:
        with self._control() as conn:
            override_id = conn.execute(
                mock_overrides.insert()
                .values(
                    session=_key(session),
                    operation_id=override["operationId"],
                    remaining=override["remaining"],
                    override=json.dumps(override),
                )
                .returning(mock_overrides.c.id)
            ).scalar_one()
        return {**override, "id": override_id}

    def overrides(self, session: str | None) -> list[Override]:
        with self._control() as conn:
            rows = conn.execute(
                mock_overrides.select()
                .where(mock_overrides.c.session == _key(session))
                .order_by(mock_overrides.c.id.desc())
            ).all()
        return [self._override(row) for row in rows]

    @staticmethod
    def _override(row: Any) -> Override:
        return {**json.loads(row.override), "id": row.id, "remaining": row.remaining}

    def clear_overrides(self, session: str | None) -> None:
        with self._control() as conn:
            conn.execute(mock_overrides.delete().where(mock_overrides.c.session == _key(session)))

    def take_override(
        self, session: str | None, operation_id: str, params: dict[str, str]
    ) -> Override | None:
        t = mock_overrides
        with self._control() as conn:
            query = (
                t.select()
                .where(t.c.session == _key(session), t.c.operation_id == operation_id)
                .order_by(t.c.id.desc())
            )
            if self._postgres:
                query = query.with_for_update()
            for row in conn.execute(query).all():
                override = self._override(row)
                if not params_match(override.get("params") or {}, params):
                    continue
                if row.remaining is not None:
                    override["remaining"] = row.remaining - 1
                    if row.remaining <= 1:
                        conn.execute(t.delete().where(t.c.id == row.id))
                    else:
                        conn.execute(
                            t.update().where(t.c.id == row.id).values(remaining=t.c.remaining - 1)
                        )
                return override
        return None

    def close(self) -> None:
        with self._lock:
            for _created, store in self._open.values():
                store.close()
            self._open.clear()
        self._data.close()
        self._engine.dispose()
