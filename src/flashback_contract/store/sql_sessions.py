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
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
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
# The journal drops entries beyond its bound once every this many requests.
TRIM_EVERY = 64

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


# Statements of every request, built once (building one costs more than running it).
_INSERT_ENTRY = mock_requests.insert()
_TOUCH_SESSION = (
    mock_sessions.update()
    .where(
        mock_sessions.c.name == sa.bindparam("session_name"),
        mock_sessions.c.last_used_at > sa.bindparam("idle_since", type_=UtcDateTime),
    )
    .values(
        last_used_at=sa.bindparam("now", type_=UtcDateTime),
        request_count=mock_sessions.c.request_count + 1,
    )
    .returning(mock_sessions.c.created_at)
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
    """A SQLite file per session, copied from a template this process seeds on first use."""

    def __init__(self, directory: Path, seed: Seeder) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._template = directory / "template.sqlite3"
        self._seed = seed
        # Seeded when the first session is created, not at start-up: a server whose tests use
        # no session never pays for a second copy of a large seed.
        self._template_ready = False
        self._template_lock = threading.Lock()

    def _ensure_template(self) -> None:
        with self._template_lock:
            if self._template_ready:
                return
            # Written aside, then renamed: a process copying the template never sees half of one.
            partial = self._dir / f"template-{uuid.uuid4().hex}.partial"
            store = SqlStore(f"sqlite:///{partial}")
            with store.transaction() as uow:
                self._seed(uow)
            store.close()
            os.replace(partial, self._template)
            self._template_ready = True

    def _path(self, name: str) -> Path:
        return self._dir / f"session-{name}.sqlite3"

    def create(self, name: str) -> None:
        self._ensure_template()
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


@dataclass(frozen=True)
class _ControlEngines:
    """Where the catalog, the journal and the overrides live: one database, or on SQLite a
    file each, so that the hot path's writes (journal) never invalidate what it reads
    (overrides, cached until another connection commits to their file)."""

    catalog: Engine
    journal: Engine
    overrides: Engine
    # The SQLite file of the overrides, watched for commits by other connections.
    overrides_file: Path | None
    # The directory of the SQLite session files.
    directory: Path | None

    def all(self) -> set[Engine]:
        return {self.catalog, self.journal, self.overrides}


def _fast_sqlite(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _no_fsync(dbapi_connection: Any, _record: Any) -> None:
        # Test bookkeeping need not survive a power cut; every request writes some of it.
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    return engine


def _control_engines(store_url: str) -> _ControlEngines:
    parsed = sa.make_url(store_url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        url = store_url if parsed.get_backend_name() != "sqlite" else "sqlite:///:memory:"
        engine = create_engine(url)
        return _ControlEngines(engine, engine, engine, None, None)
    directory = Path(f"{database}.sessions")
    directory.mkdir(parents=True, exist_ok=True)
    return _ControlEngines(
        catalog=_fast_sqlite(directory / "sessions.sqlite3"),
        journal=_fast_sqlite(directory / "journal.sqlite3"),
        overrides=_fast_sqlite(directory / "overrides.sqlite3"),
        overrides_file=directory / "overrides.sqlite3",
        directory=directory,
    )


class _ChangeWatch:
    """Tells whether any connection but its own committed to a SQLite file since last asked."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # Held by the caller around changed() and what it reads after.
        self.lock = threading.Lock()
        self._seen: int | None = None

    def changed(self) -> bool:
        (version,) = self._connection.execute("PRAGMA data_version").fetchone()
        changed: bool = version != self._seen
        self._seen = int(version)
        return changed

    def close(self) -> None:
        self._connection.close()


class SqlSessions:
    """Sessions, journal and overrides in SQL, visible to every process on the same database."""

    def __init__(self, default: Store, store_url: str, seed: Seeder, policy: SessionPolicy) -> None:
        self.policy = policy
        self._default = default
        self._engines = _control_engines(store_url)
        self._engine = self._engines.catalog
        for engine in self._engines.all():
            control_metadata.create_all(engine)
        self._postgres = self._engine.dialect.name == "postgresql"
        self._data: _SessionData
        if self._engines.directory is not None:
            self._data = _SqliteFiles(self._engines.directory, seed)
        elif self._postgres:
            self._data = _PostgresSchemas(store_url, self._engine, seed)
        else:
            self._data = _SqliteInMemory(seed)
        # SQLite: which (session, operationId) pairs have overrides, re-read only after a commit
        # to the overrides file; most requests then cost no query at all.
        self._watch = (
            None
            if self._engines.overrides_file is None
            else _ChangeWatch(self._engines.overrides_file)
        )
        self._overridden: frozenset[tuple[str, str]] = frozenset()
        # name -> (created_at of the session the store belongs to, store)
        self._open: dict[str, tuple[datetime, Store]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def _control(self, engine: Engine | None = None) -> Iterator[Connection]:
        with (engine or self._engine).begin() as conn:
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
        # An expired session nothing swept yet is not live: its next use starts anew.
        created_at: datetime | None = conn.execute(
            _TOUCH_SESSION, {"session_name": name, "now": now, "idle_since": now - self.policy.ttl}
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
            self._forget_rows(name)
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
        self._forget_rows(name)
        with self._lock:
            cached = self._open.pop(name, None)
        if cached is not None:
            cached[1].close()
        self._data.remove(name)

    def _forget_rows(self, name: str) -> None:
        with self._control(self._engines.journal) as conn:
            conn.execute(mock_requests.delete().where(mock_requests.c.session == name))
        with self._control(self._engines.overrides) as conn:
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
        with self._control(self._engines.journal) as conn:
            entry_id = conn.execute(
                _INSERT_ENTRY,
                {
                    "session": session,
                    "operation_id": entry["operationId"],
                    "method": entry["method"],
                    "status": entry["status"],
                    "entry": json.dumps(entry),
                },
            ).inserted_primary_key
            if entry_id is not None and entry_id[0] % TRIM_EVERY == 0:
                # Storage stays within the bound plus TRIM_EVERY a session; reads are exact.
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
        # The last journal_size of each session, whatever trimming has not removed yet.
        rank = (
            sa.func.row_number()
            .over(partition_by=t.c.session, order_by=t.c.id.desc())
            .label("rank")
        )
        kept = sa.select(t.c.id, t.c.entry, rank).where(*conditions).subquery()
        with self._control(self._engines.journal) as conn:
            rows = conn.execute(
                sa.select(kept.c.id, kept.c.entry)
                .where(kept.c.rank <= self.policy.journal_size)
                .order_by(kept.c.id.desc())
                .limit(query.limit)
            ).all()
        return [{**json.loads(row.entry), "id": row.id} for row in rows]

    def clear_requests(self, session: str | None, all_sessions: bool) -> None:
        with self._control(self._engines.journal) as conn:
            delete = mock_requests.delete()
            if not all_sessions:
                delete = delete.where(mock_requests.c.session == _key(session))
            conn.execute(delete)

    # -- overrides -----------------------------------------------------------------
    def add_override(self, session: str | None, override: Override) -> Override:
        with self._control(self._engines.overrides) as conn:
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
        with self._control(self._engines.overrides) as conn:
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
        with self._control(self._engines.overrides) as conn:
            conn.execute(mock_overrides.delete().where(mock_overrides.c.session == _key(session)))

    def _overridden_now(self) -> frozenset[tuple[str, str]]:
        """The (session, operationId) pairs with overrides, read again after any commit."""
        assert self._watch is not None
        with self._watch.lock:
            if self._watch.changed():
                with self._control(self._engines.overrides) as conn:
                    t = mock_overrides
                    pairs = conn.execute(sa.select(t.c.session, t.c.operation_id)).all()
                self._overridden = frozenset((row.session, row.operation_id) for row in pairs)
            return self._overridden

    def take_override(
        self, session: str | None, operation_id: str, params: dict[str, str]
    ) -> Override | None:
        t = mock_overrides
        if self._watch is not None and (_key(session), operation_id) not in self._overridden_now():
            return None
        with self._control(self._engines.overrides) as conn:
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
        if self._watch is not None:
            self._watch.close()
        for engine in self._engines.all():
            engine.dispose()
