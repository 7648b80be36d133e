"""Bearer lookups kept between requests where the store reports a data version (SQLite files),
and current again after any commit, this process's or another's."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flashback_contract.domain import Role, User, utcnow
from flashback_contract.mock import tokens
from flashback_contract.mock.auth import Authenticator, Principal
from flashback_contract.store import Store
from flashback_contract.store.base import UnitOfWork
from flashback_contract.store.kept import KeptReads
from tests.conftest import seeded_store

SECRET = "s" * 32
OWNER = Principal("user-acme-owner", "org-acme", Role.OWNER)


class CountingReads:
    """A store whose read transactions are counted: how many lookups reached the data."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url
        self.reads = 0

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        self.reads += 1
        return self.store.reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def store(seeded_sqlite: Store) -> CountingReads:
    return CountingReads(seeded_sqlite)


def authenticator(store: CountingReads) -> Authenticator:
    return Authenticator(lambda: store, SECRET)  # type: ignore[arg-type, return-value]


def test_a_token_is_looked_up_once_while_nothing_is_committed(store: CountingReads) -> None:
    auth = authenticator(store)

    assert [auth.principal_for("demo-acme-owner") for _ in range(3)] == [OWNER] * 3
    assert store.reads == 1


def test_a_token_another_process_revokes_is_refused_at_once(
    store: CountingReads, sqlite_path: Path
) -> None:
    auth = authenticator(store)
    assert auth.principal_for("demo-acme-owner") == OWNER

    other = sqlite3.connect(sqlite_path)
    with other:
        other.execute("UPDATE users SET token = 'rotated' WHERE token = 'demo-acme-owner'")
    other.close()

    assert auth.principal_for("demo-acme-owner") is None
    assert auth.principal_for("rotated") == OWNER


def test_an_unknown_token_given_to_a_new_user_by_this_process_is_accepted_at_once(
    store: CountingReads,
) -> None:
    auth = authenticator(store)
    assert auth.principal_for("tok-new") is None  # kept as unknown...

    with store.transaction() as uow:
        uow.add_user(User("user-new", "org-acme", Role.USER), token="tok-new")

    # ...until the commit changes the data version.
    assert auth.principal_for("tok-new") == Principal("user-new", "org-acme", Role.USER)


def test_an_expired_jwt_is_refused_though_its_user_is_kept(store: CountingReads) -> None:
    auth = authenticator(store)
    now = utcnow()
    valid = tokens.issue(SECRET, "user-acme-owner", timedelta(hours=1), now)
    expired = tokens.issue(SECRET, "user-acme-owner", timedelta(hours=1), now - timedelta(hours=2))

    assert auth.principal_for(valid) == OWNER
    assert auth.principal_for(expired) is None
    assert auth.principal_for(valid) == OWNER
    assert store.reads == 1


def test_unknown_tokens_keep_at_most_a_bounded_number_of_entries(store: CountingReads) -> None:
    auth = Authenticator(lambda: store, SECRET, KeptReads(limit=64))  # type: ignore[arg-type, return-value]
    for n in range(64 + 50):
        assert auth.principal_for(f"random-{n}") is None
    reads = store.reads

    # The known token, asked after the bound was reached, is looked up each time.
    assert auth.principal_for("demo-acme-owner") == OWNER
    assert auth.principal_for("demo-acme-owner") == OWNER
    assert store.reads == reads + 2


def test_a_store_without_a_data_version_is_read_on_every_request() -> None:
    store = CountingReads(seeded_store("memory://"))
    auth = authenticator(store)

    assert [auth.principal_for("demo-acme-owner") for _ in range(3)] == [OWNER] * 3
    assert store.reads == 3
