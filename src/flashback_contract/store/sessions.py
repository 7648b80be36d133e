"""Sessions: named, isolated copies of the seeded state, with their request journal and overrides.

The catalog is the port; ``MemorySessions`` is the per-process adapter for ``memory://`` and
``SqlSessions`` (store/sql_sessions.py) keeps everything in the database, so several server
processes on one SQLite file or PostgreSQL database share the same sessions.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from flashback_contract.store.base import Store, UnitOfWork
from flashback_contract.store.memory import MemoryStore

Seeder = Callable[[UnitOfWork], None]
"""Writes the seed into a new session's empty state."""

JournalEntry = dict[str, Any]
Override = dict[str, Any]


class SessionLimitReached(Exception):
    """A new session would exceed the configured number of sessions."""


@dataclass(frozen=True)
class SessionInfo:
    name: str
    created_at: datetime
    last_used_at: datetime
    request_count: int


@dataclass(frozen=True)
class SessionPolicy:
    """How many sessions may exist, how long an idle one lives, how much journal each keeps."""

    max_sessions: int = 100
    ttl: timedelta = timedelta(hours=1)
    journal_size: int = 1000


@dataclass(frozen=True)
class JournalQuery:
    """Which journal entries to read (None: any), newest first, at most ``limit``."""

    session: str | None = None
    all_sessions: bool = True
    operation_id: str | None = None
    method: str | None = None
    status: int | None = None
    limit: int = 100

    def matches(self, entry: JournalEntry) -> bool:
        return (
            (self.all_sessions or entry["session"] == self.session)
            and (self.operation_id is None or entry["operationId"] == self.operation_id)
            and (self.method is None or entry["method"] == self.method)
            and (self.status is None or entry["status"] == self.status)
        )


def params_match(wanted: dict[str, str], params: dict[str, str]) -> bool:
    """An override's ``params`` are a subset of the request's path and query parameters."""
    return all(params.get(name) == value for name, value in wanted.items())


class SessionCatalog(Protocol):
    """The sessions of one server (and of every process sharing its store).

    ``None`` names the default state: the store the server was started with.
    """

    policy: SessionPolicy

    def use(self, name: str | None, now: datetime) -> Store:
        """The session's store, created from the seed on first use; counts the request.

        Raises SessionLimitReached when a new session would exceed the limit.
        """
        ...

    def sessions(self, now: datetime) -> list[SessionInfo]:
        """Every live session, oldest first (idle ones past their time expire here)."""
        ...

    def drop(self, name: str) -> bool:
        """Forget a session, its data, journal and overrides; False if there was none."""
        ...

    # -- journal -------------------------------------------------------------------
    def record(self, entry: JournalEntry) -> None:
        """Append a request to its session's journal (keeps the last ``journal_size``)."""
        ...

    # Whether ``record`` is a database write (tens of microseconds), not an append in memory.
    records_in_a_database: bool

    # Whether calls are round trips to a server other instances share (PostgreSQL), which
    # may be slow or wait for another instance's locks: ``use`` of a named session,
    # ``take_override`` and ``record`` are then made from a worker thread by callers on the
    # event loop.
    may_wait: bool

    def requests(self, query: JournalQuery) -> list[JournalEntry]: ...
    def clear_requests(self, session: str | None, all_sessions: bool) -> None: ...

    # -- overrides -----------------------------------------------------------------
    def add_override(self, session: str | None, override: Override) -> Override:
        """Store an override (``operationId``, ``params``, ``times``...); return it with its id."""
        ...

    def overrides(self, session: str | None) -> list[Override]:
        """The session's active overrides, newest first, with their remaining counts."""
        ...

    def clear_overrides(self, session: str | None) -> None: ...
    def overridden(self, session: str | None, operation_id: str) -> bool:
        """False when no override of the session can match the operation; True when one may.

        Asked on every request before ``take_override``, so it costs next to nothing.
        """
        ...

    def take_override(
        self, session: str | None, operation_id: str, params: dict[str, str]
    ) -> Override | None:
        """The newest override matching this request, its remaining count spent by one."""
        ...

    def close(self) -> None: ...


class _Overrides:
    """Overrides of one process: a list per session, newest last."""

    def __init__(self) -> None:
        self._by_session: dict[str | None, list[Override]] = {}
        self._next_id = 1
        self._has_any = False

    def add(self, session: str | None, override: Override) -> Override:
        stored = {**override, "id": self._next_id}
        self._next_id += 1
        self._by_session.setdefault(session, []).append(stored)
        self._has_any = True
        return dict(stored)

    def active(self, session: str | None) -> list[Override]:
        return [dict(o) for o in reversed(self._by_session.get(session, []))]

    def clear(self, session: str | None) -> None:
        self._by_session.pop(session, None)
        self._has_any = any(self._by_session.values())

    def any_for(self, session: str | None, operation_id: str) -> bool:
        return self._has_any and any(
            o["operationId"] == operation_id for o in self._by_session.get(session, ())
        )

    def take(
        self, session: str | None, operation_id: str, params: dict[str, str]
    ) -> Override | None:
        if not self._has_any:
            return None
        active = self._by_session.get(session, [])
        for override in reversed(active):
            if override["operationId"] == operation_id and params_match(
                override.get("params") or {}, params
            ):
                if override["remaining"] is not None:
                    override["remaining"] -= 1
                    if override["remaining"] <= 0:
                        active.remove(override)
                return dict(override)
        return None


class MemorySessions:
    """Sessions of one process: a MemoryStore per session, journal and overrides in memory."""

    records_in_a_database = False
    may_wait = False

    def __init__(self, default: Store, seed: Seeder, policy: SessionPolicy) -> None:
        self.policy = policy
        self._default = default
        self._seed = seed
        self._stores: dict[str, Store] = {}
        self._info: dict[str, SessionInfo] = {}
        self._journal: dict[str | None, deque[JournalEntry]] = {}
        self._next_entry = 1
        self._overrides = _Overrides()
        self._lock = threading.Lock()

    def use(self, name: str | None, now: datetime) -> Store:
        if name is None:
            return self._default
        with self._lock:
            info = self._info.get(name)
            if info is not None and info.last_used_at + self.policy.ttl <= now:
                # Expired, though nothing swept it yet: its next use starts from the seed.
                self._forget(name)
                info = None
            if info is None:
                self._expire(now)
                if len(self._info) >= self.policy.max_sessions:
                    raise SessionLimitReached(name)
                store = MemoryStore(f"memory://session/{name}")
                with store.transaction() as uow:
                    self._seed(uow)
                self._stores[name] = store
                info = SessionInfo(name, now, now, 0)
            self._info[name] = SessionInfo(name, info.created_at, now, info.request_count + 1)
            return self._stores[name]

    def _expire(self, now: datetime) -> None:
        for name, info in list(self._info.items()):
            if info.last_used_at + self.policy.ttl <= now:
                self._forget(name)

    def _forget(self, name: str) -> bool:
        if self._info.pop(name, None) is None:
            return False
        self._stores.pop(name).close()
        self._journal.pop(name, None)
        self._overrides.clear(name)
        return True

    def sessions(self, now: datetime) -> list[SessionInfo]:
        with self._lock:
            self._expire(now)
            return sorted(self._info.values(), key=lambda i: (i.created_at, i.name))

    def drop(self, name: str) -> bool:
        with self._lock:
            return self._forget(name)

    def record(self, entry: JournalEntry) -> None:
        if self.policy.journal_size <= 0:
            return
        with self._lock:
            journal = self._journal.get(entry["session"])
            if journal is None:
                journal = self._journal[entry["session"]] = deque(maxlen=self.policy.journal_size)
            journal.append({**entry, "id": self._next_entry})
            self._next_entry += 1

    def requests(self, query: JournalQuery) -> list[JournalEntry]:
        with self._lock:
            journals = (
                list(self._journal.values())
                if query.all_sessions
                else [self._journal.get(query.session, deque())]
            )
            entries = [e for journal in journals for e in journal if query.matches(e)]
        entries.sort(key=lambda e: e["id"], reverse=True)
        return entries[: query.limit]

    def clear_requests(self, session: str | None, all_sessions: bool) -> None:
        with self._lock:
            if all_sessions:
                self._journal.clear()
            else:
                self._journal.pop(session, None)

    def add_override(self, session: str | None, override: Override) -> Override:
        with self._lock:
            return self._overrides.add(session, override)

    def overrides(self, session: str | None) -> list[Override]:
        with self._lock:
            return self._overrides.active(session)

    def clear_overrides(self, session: str | None) -> None:
        with self._lock:
            self._overrides.clear(session)

    def overridden(self, session: str | None, operation_id: str) -> bool:
        with self._lock:
            return self._overrides.any_for(session, operation_id)

    def take_override(
        self, session: str | None, operation_id: str, params: dict[str, str]
    ) -> Override | None:
        with self._lock:
            return self._overrides.take(session, operation_id, params)

    def close(self) -> None:
        with self._lock:
            for name in list(self._info):
                self._forget(name)
