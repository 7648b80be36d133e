"""Sessions in the database, shared by every server process on the same SQLite file or PostgreSQL.

The catalog, journal and overrides live in control tables; each session's data lives in a SQLite
file copied from a seeded template, or in a PostgreSQL schema of its own. A process caches the
stores it opened and reopens one when the catalog says the session was created anew.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

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
from flashback_contract.store.sql import SqlStore, UtcDateTime, create_engine, sqlite_setup
from flashback_contract.store.sql_run import AlchemyRunner, ChangeWatch, Runner, SqliteConnections

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


# Statements of the catalog, journal and overrides, built once.
_s = mock_sessions.c
_TOUCH_SESSION = (
    mock_sessions.update()
    .where(
        _s.name == sa.bindparam("session_name"),
        _s.last_used_at > sa.bindparam("idle_since", type_=UtcDateTime),
    )
    .values(
        last_used_at=sa.bindparam("now", type_=UtcDateTime),
        request_count=_s.request_count + 1,
    )
    .returning(_s.created_at)
)
_LOCK_CATALOG = sa.text("LOCK TABLE mock_sessions IN EXCLUSIVE MODE")
_COUNT_SESSIONS = sa.select(sa.func.count()).select_from(mock_sessions)
_INSERT_SESSION = mock_sessions.insert()
_IDLE_SESSIONS = sa.select(_s.name).where(_s.last_used_at <= sa.bindparam("idle_since"))
_DELETE_SESSION = mock_sessions.delete().where(_s.name == sa.bindparam("session_name"))
_SESSION = sa.select(_s.name).where(_s.name == sa.bindparam("session_name"))
_ALL_SESSIONS = mock_sessions.select().order_by(_s.created_at, _s.name)

_j = mock_requests.c
_INSERT_ENTRY = mock_requests.insert()
_INSERT_ENTRY_RETURNING = _INSERT_ENTRY.returning(_j.id)
# Keeps the newest ``keep`` entries of a session: storage stays within the bound plus
# TRIM_EVERY a session, and reads are exact.
_TRIM_JOURNAL = mock_requests.delete().where(
    _j.session == sa.bindparam("session_name"),
    _j.id
    < (
        sa.select(_j.id)
        .where(_j.session == sa.bindparam("session_name"))
        .order_by(_j.id.desc())
        .offset(sa.bindparam("keep", type_=sa.Integer))
        .limit(1)
        .scalar_subquery()
    ),
)
_CLEAR_JOURNAL = mock_requests.delete()
_CLEAR_SESSION_JOURNAL = mock_requests.delete().where(_j.session == sa.bindparam("session_name"))

_o = mock_overrides.c
_INSERT_OVERRIDE = mock_overrides.insert().returning(_o.id)
_SESSION_OVERRIDES = (
    mock_overrides.select().where(_o.session == sa.bindparam("session_name")).order_by(_o.id.desc())
)
_CLEAR_SESSION_OVERRIDES = mock_overrides.delete().where(_o.session == sa.bindparam("session_name"))
_OVERRIDDEN = sa.select(_o.session, _o.operation_id)
_CANDIDATES = (
    mock_overrides.select()
    .where(_o.session == sa.bindparam("session_name"), _o.operation_id == sa.bindparam("op"))
    .order_by(_o.id.desc())
)
_CANDIDATES_FOR_UPDATE = _CANDIDATES.with_for_update()
_DELETE_OVERRIDE = mock_overrides.delete().where(_o.id == sa.bindparam("override_id"))
_SPEND_OVERRIDE = (
    mock_overrides.update()
    .where(_o.id == sa.bindparam("override_id"))
    .values(remaining=_o.remaining - 1)
)

_JOURNAL_FILTERS = ("session", "operation_id", "method", "status")


@functools.cache
def _journal_query(filters: tuple[str, ...]) -> Any:
    """The newest entries matching the filters present, the last journal_size of each session
    (whatever trimming has not removed yet)."""
    rank = sa.func.row_number().over(partition_by=_j.session, order_by=_j.id.desc()).label("rank")
    conditions = [_j[name] == sa.bindparam(f"want_{name}") for name in filters]
    kept = sa.select(_j.id, _j.entry, rank).where(*conditions).subquery()
    return (
        sa.select(kept.c.id, kept.c.entry)
        .where(kept.c.rank <= sa.bindparam("size", type_=sa.Integer))
        .order_by(kept.c.id.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer))
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


def _control_setup(engine: Engine) -> Callable[[Any], None]:
    """How a SQLite control database's connections start: as a store's, but files skip fsync."""
    in_memory = engine.url.database in (None, "", ":memory:")
    setup = sqlite_setup(in_memory)

    def control_setup(dbapi_connection: Any) -> None:
        setup(dbapi_connection)
        if not in_memory:
            # Test bookkeeping need not survive a power cut; every request writes some of it.
            dbapi_connection.execute("PRAGMA synchronous=OFF")

    return control_setup


def _fast_sqlite(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _no_fsync(dbapi_connection: Any, _record: Any) -> None:
        # After the store's own setup, which create_engine installed; as in _control_setup.
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


class _Control:
    """Transactions on one control database: SQLite through its own connections, as the
    store's, or PostgreSQL through SQLAlchemy."""

    def __init__(self, engine: Engine, setup: Callable[[Any], None] | None) -> None:
        self.engine = engine
        self._sqlite = None if setup is None else SqliteConnections(engine, setup)

    def __call__(self) -> AbstractContextManager[Runner]:
        if self._sqlite is not None:
            return self._sqlite.transaction("BEGIN IMMEDIATE")
        return self._alchemy()

    def insert(self, insert: sa.Insert, returning_id: sa.Insert, params: dict[str, Any]) -> int:
        """One row in a transaction of its own; its id. SQLite runs ``insert`` without a
        BEGIN and a COMMIT of its own (the journal writes a row per request), PostgreSQL
        ``returning_id``, the same INSERT returning the id."""
        if self._sqlite is not None:
            return self._sqlite.insert_alone(insert, params)
        with self._alchemy() as x:
            return int(x.scalar(returning_id, params))

    @contextmanager
    def _alchemy(self) -> Iterator[Runner]:
        with self.engine.begin() as conn:
            yield AlchemyRunner(conn)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        self.engine.dispose()


class SqlSessions:
    """Sessions, journal and overrides in SQL, visible to every process on the same database."""

    records_in_a_database = True

    def __init__(self, default: Store, store_url: str, seed: Seeder, policy: SessionPolicy) -> None:
        self.policy = policy
        self._default = default
        self._engines = _control_engines(store_url)
        for engine in self._engines.all():
            control_metadata.create_all(engine)
        self._postgres = self._engines.catalog.dialect.name == "postgresql"
        # SQLite's calls are local, short transactions; PostgreSQL's are round trips.
        self.may_wait = self._postgres
        controls = {
            engine: _Control(engine, None if self._postgres else _control_setup(engine))
            for engine in self._engines.all()
        }
        self._catalog = controls[self._engines.catalog]
        self._journal = controls[self._engines.journal]
        self._overrides_db = controls[self._engines.overrides]
        self._controls = list(controls.values())
        self._data: _SessionData
        if self._engines.directory is not None:
            self._data = _SqliteFiles(self._engines.directory, seed)
        elif self._postgres:
            self._data = _PostgresSchemas(store_url, self._engines.catalog, seed)
        else:
            self._data = _SqliteInMemory(seed)
        # SQLite: which (session, operationId) pairs have overrides, re-read only after a commit
        # to the overrides file; most requests then cost no query at all.
        self._watch = (
            None
            if self._engines.overrides_file is None
            else ChangeWatch(self._engines.overrides_file)
        )
        self._overridden: frozenset[tuple[str, str]] = frozenset()
        # name -> (created_at of the session the store belongs to, store)
        self._open: dict[str, tuple[datetime, Store]] = {}
        self._lock = threading.Lock()

    def _lock_catalog(self, x: Runner) -> None:
        # SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL needs a lock.
        if self._postgres:
            x.run(_LOCK_CATALOG)

    # -- sessions ----------------------------------------------------------------
    def use(self, name: str | None, now: datetime) -> Store:
        if name is None:
            return self._default
        with self._catalog() as x:
            created_at = self._touch(x, name, now)
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

    def _touch(self, x: Runner, name: str, now: datetime) -> datetime | None:
        """Count a request of a live session; its creation time, or None if it is not live."""
        # An expired session nothing swept yet is not live: its next use starts anew.
        created_at: datetime | None = x.scalar(
            _TOUCH_SESSION, {"session_name": name, "now": now, "idle_since": now - self.policy.ttl}
        )
        return created_at

    def _create(self, name: str, now: datetime) -> datetime:
        with self._catalog() as x:
            self._lock_catalog(x)
            existing = self._touch(x, name, now)
            if existing is not None:  # another process created it meanwhile
                return existing
            self._expire(x, now)
            if int(x.scalar(_COUNT_SESSIONS)) >= self.policy.max_sessions:
                raise SessionLimitReached(name)
            self._data.create(name)
            x.run(
                _INSERT_SESSION,
                {"name": name, "created_at": now, "last_used_at": now, "request_count": 1},
            )
            self._forget_rows(name)
        return now

    def _expire(self, x: Runner, now: datetime) -> None:
        for row in x.rows(_IDLE_SESSIONS, {"idle_since": now - self.policy.ttl}):
            self._remove(x, row.name)

    def _remove(self, x: Runner, name: str) -> None:
        x.run(_DELETE_SESSION, {"session_name": name})
        self._forget_rows(name)
        with self._lock:
            cached = self._open.pop(name, None)
        if cached is not None:
            cached[1].close()
        self._data.remove(name)

    def _forget_rows(self, name: str) -> None:
        with self._journal() as x:
            x.run(_CLEAR_SESSION_JOURNAL, {"session_name": name})
        with self._overrides_db() as x:
            x.run(_CLEAR_SESSION_OVERRIDES, {"session_name": name})

    def sessions(self, now: datetime) -> list[SessionInfo]:
        with self._catalog() as x:
            self._lock_catalog(x)
            self._expire(x, now)
            rows = x.rows(_ALL_SESSIONS)
        return [SessionInfo(r.name, r.created_at, r.last_used_at, r.request_count) for r in rows]

    def drop(self, name: str) -> bool:
        with self._catalog() as x:
            self._lock_catalog(x)
            if x.first(_SESSION, {"session_name": name}) is None:
                return False
            self._remove(x, name)
        return True

    # -- journal -------------------------------------------------------------------
    def record(self, entry: JournalEntry) -> None:
        size = self.policy.journal_size
        if size <= 0:
            return
        session = _key(entry["session"])
        entry_id = self._journal.insert(
            _INSERT_ENTRY,
            _INSERT_ENTRY_RETURNING,
            {
                "session": session,
                "operation_id": entry["operationId"],
                "method": entry["method"],
                "status": entry["status"],
                "entry": json.dumps(entry),
            },
        )
        if entry_id % TRIM_EVERY == 0:
            with self._journal() as x:
                x.run(_TRIM_JOURNAL, {"session_name": session, "keep": size - 1})

    def requests(self, query: JournalQuery) -> list[JournalEntry]:
        wanted: dict[str, Any] = {
            "session": None if query.all_sessions else _key(query.session),
            "operation_id": query.operation_id,
            "method": query.method,
            "status": query.status,
        }
        filters = tuple(name for name in _JOURNAL_FILTERS if wanted[name] is not None)
        params = {f"want_{name}": wanted[name] for name in filters}
        with self._journal() as x:
            rows = x.rows(
                _journal_query(filters),
                {**params, "size": self.policy.journal_size, "limit": query.limit},
            )
        return [{**json.loads(row.entry), "id": row.id} for row in rows]

    def clear_requests(self, session: str | None, all_sessions: bool) -> None:
        with self._journal() as x:
            if all_sessions:
                x.run(_CLEAR_JOURNAL)
            else:
                x.run(_CLEAR_SESSION_JOURNAL, {"session_name": _key(session)})

    # -- overrides -----------------------------------------------------------------
    def add_override(self, session: str | None, override: Override) -> Override:
        with self._overrides_db() as x:
            override_id = x.scalar(
                _INSERT_OVERRIDE,
                {
                    "session": _key(session),
                    "operation_id": override["operationId"],
                    "remaining": override["remaining"],
                    "override": json.dumps(override),
                },
            )
        return {**override, "id": override_id}

    def overrides(self, session: str | None) -> list[Override]:
        with self._overrides_db() as x:
            rows = x.rows(_SESSION_OVERRIDES, {"session_name": _key(session)})
        return [self._override(row) for row in rows]

    @staticmethod
    def _override(row: Any) -> Override:
        return {**json.loads(row.override), "id": row.id, "remaining": row.remaining}

    def clear_overrides(self, session: str | None) -> None:
        with self._overrides_db() as x:
            x.run(_CLEAR_SESSION_OVERRIDES, {"session_name": _key(session)})

    def _overridden_now(self) -> frozenset[tuple[str, str]]:
        """The (session, operationId) pairs with overrides, read again after any commit."""
        assert self._watch is not None
        with self._watch.lock:
            if self._watch.changed():
                with self._overrides_db() as x:
                    pairs = x.rows(_OVERRIDDEN)
                self._overridden = frozenset((row.session, row.operation_id) for row in pairs)
            return self._overridden

    def overridden(self, session: str | None, operation_id: str) -> bool:
        # PostgreSQL: no cheap way to know, take_override reads.
        return self._watch is None or (_key(session), operation_id) in self._overridden_now()

    def take_override(
        self, session: str | None, operation_id: str, params: dict[str, str]
    ) -> Override | None:
        if not self.overridden(session, operation_id):
            return None
        with self._overrides_db() as x:
            # FOR UPDATE on PostgreSQL: racing requests spend one use each.
            candidates = x.rows(
                _CANDIDATES_FOR_UPDATE if self._postgres else _CANDIDATES,
                {"session_name": _key(session), "op": operation_id},
            )
            for row in candidates:
                override = self._override(row)
                if not params_match(override.get("params") or {}, params):
                    continue
                if row.remaining is not None:
                    override["remaining"] = row.remaining - 1
                    spend = _DELETE_OVERRIDE if row.remaining <= 1 else _SPEND_OVERRIDE
                    x.run(spend, {"override_id": row.id})
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
        for control in self._controls:
            control.close()
