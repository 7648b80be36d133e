"""Pluggable stores, chosen by URL: ``memory://``, ``sqlite:///FILE``, ``postgresql://...``."""

from __future__ import annotations

from pathlib import Path

from flashback_contract.store.base import EventQuery, Store, UnitOfWork
from flashback_contract.store.memory import MemoryStore

DEFAULT_STORE_URL = "sqlite:///flashback-contract.sqlite3"

__all__ = ["DEFAULT_STORE_URL", "EventQuery", "MemoryStore", "Store", "UnitOfWork", "open_store"]


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
