"""What read units found, kept while the store's data version stays the same.

A store that reports a data version (a SQLite file: its WAL-index header, read without a lock)
tells after every commit, by any connection or process, that its data may have changed. A read
kept under a version is answered again without a transaction for as long as the store reports
that version; the first request after any commit reads the data anew. Stores without a data
version (memory, PostgreSQL) are read every time.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flashback_contract.store.base import Store, UnitOfWork

T = TypeVar("T")

# Items kept in all, over every store (a result counts one, plus the size its caller gives):
# about 30 MB of listed keys at most, whatever the keys and sessions asked for.
KEPT_ITEMS = 50_000


@dataclass
class _Kept:
    version: int
    values: dict[Hashable, Any] = field(default_factory=dict)
    items: int = 0


class KeptReads:
    """Read units' results by key, per store, valid for the data version read before them.

    The version is read before the data, so what is kept under a version is at least that
    new; a commit after it changes the version, and nothing kept under the old one is
    answered again. A read that raises keeps nothing. Kept values are shared by every caller:
    a read returns immutable values (tuples, frozen dataclasses). ``limit`` bounds the items
    kept over every store: a result counts one plus ``size(result)`` (a listing's length).
    When one does not fit, what was kept for stores whose data changed since is forgotten; if
    it still does not fit, it is read again each time.
    """

    def __init__(self, limit: int = KEPT_ITEMS) -> None:
        self.limit = limit
        self._kept: weakref.WeakKeyDictionary[Store, _Kept] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def read(
        self,
        store: Store,
        key: Hashable,
        read: Callable[[UnitOfWork], T],
        size: Callable[[T], int] | None = None,
    ) -> T:
        version = store.data_version()
        if version is None:
            with store.reading() as uow:
                return read(uow)
        with self._lock:
            kept = self._kept.get(store)
            if kept is not None and kept.version == version and key in kept.values:
                value: T = kept.values[key]
                return value
        with store.reading() as uow:
            value = read(uow)
        with self._lock:
            kept = self._kept.get(store)
            # Versions only grow: a read that began before a newer one was kept keeps nothing.
            if kept is None or kept.version < version:
                kept = self._kept[store] = _Kept(version)
            if kept.version != version:
                return value
            items = 1 + (0 if size is None else size(value))
            if self._items() + items > self.limit:
                self._drop_outdated()
                if self._kept.get(store) is not kept or self._items() + items > self.limit:
                    return value
            kept.values[key] = value
            kept.items += items
        return value

    def _items(self) -> int:
        # Only on a miss, which has just read the data: a sum over the open stores.
        return sum(kept.items for kept in self._kept.values())

    def _drop_outdated(self) -> None:
        """Forget what was kept for stores whose data changed since: it only holds room."""
        for store, kept in list(self._kept.items()):
            try:
                current = store.data_version()
            except Exception:
                # Closed since (an expired session's store not yet collected): nothing to keep.
                current = None
            if current != kept.version:
                del self._kept[store]
