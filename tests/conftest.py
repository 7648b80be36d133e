"""Shared fixtures: an app per test over a fresh store, and the demo tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from connexion import FlaskApp
from starlette.testclient import TestClient

from flashback_contract import Settings, create_app
from flashback_contract.mock.seed import seed_if_empty
from flashback_contract.store import MemoryStore, Store, open_store

OWNER = "demo-acme-owner"
ADMIN = "demo-acme-admin"
MEMBER = "demo-acme-user"
GLOBEX_OWNER = "demo-globex-owner"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def settings() -> Settings:
    """Test settings: memory store, response validation on."""
    return Settings(store_url="memory://", validate_responses=True)


@pytest.fixture
def store() -> Iterator[Store]:
    memory = MemoryStore()
    yield memory
    memory.close()


def seeded_store(url: str) -> Store:
    """A store opened at ``url`` with the demo data in it."""
    store = open_store(url)
    seed_if_empty(store, None)
    return store


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


@pytest.fixture
def seeded_sqlite(sqlite_path: Path) -> Iterator[Store]:
    """A SQLite store on a file of its own, holding the demo data."""
    store = seeded_store(f"sqlite:///{sqlite_path}")
    yield store
    store.close()


@pytest.fixture
def app(settings: Settings, store: Store) -> FlaskApp:
    return create_app(settings, store=store)


@pytest.fixture
def client(app: FlaskApp) -> Iterator[TestClient]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def make_app(store: Store) -> Callable[..., FlaskApp]:
    """Build an app with setting overrides over the test's store."""

    def build(**overrides: Any) -> FlaskApp:
        base = {"store_url": "memory://", "validate_responses": True}
        base.update(overrides)
        return create_app(Settings(**base), store=store)

    return build
