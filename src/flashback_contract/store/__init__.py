"""Pluggable stores, chosen by URL: ``memory://``, ``sqlite:///FILE``, ``postgresql://...``."""

from __future__ import annotations

from pathlib import Path

from flashback_contract.store.base import EventQuery, Store, UnitOfWork
from flashback_contract.store.memory import MemoryStore
from flashback_contract.store.sessions import (
    MemorySessions,
    Seeder,
    SessionCatalog,
    SessionPolicy,
)

DEFAULT_STORE_URL = "sqlite:///flashback-contract.sqlite3"

__all__ = [
    "DEFAULT_STORE_URL",
    "EventQuery",
    "MemoryStore",
    "SessionCatalog",
    "SessionPolicy",
    "Store",
    "UnitOfWork",
    "open_sessions",
    "open_store",
]


class StoreUrlError(ValueError):
    """The store URL names no supported adapter."""


def open_store(url: str) -> Store:
    """Open the store a URL names."""
    if url.startswith("memory://"):
        return MemoryStore(url)
    if url.startswith("sqlite:") or url.startswith("postgresql"):
        from flashback_contract.store.sql import SqlStore

        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(
                parents=True, exist_ok=True
            )
        return SqlStore(url)
    raise StoreUrlError(
        f"unsupported store URL {url!r}: use memory://, sqlite:///PATH or postgresql://..."
    )


def open_sessions(store: Store, seed: Seeder, policy: SessionPolicy) -> SessionCatalog:
    """The sessions beside ``store``: in the same database, or in this process for memory."""
    if isinstance(store, MemoryStore):
        return MemorySessions(store, seed, policy)
    from flashback_contract.store.sql_sessions import SqlSessions

    return SqlSessions(store, store.url, seed, policy)
