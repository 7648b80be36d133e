"""Replay records are pruned once no request could replay them: the table stays bounded."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from flashback_contract import Settings, create_app
from flashback_contract.domain import iso, utcnow
from flashback_contract.mock.services import EXTENSION_KEY
from flashback_contract.store import open_store
from tests.test_nodes import register_body

WINDOW = timedelta(seconds=300)


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "replays.sqlite3"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(database: Path, clock: Clock) -> Iterator[TestClient]:
    store = open_store(f"sqlite:///{database}")
    app = create_app(Settings(store_url=store.url), store=store)
    app.app.extensions[EXTENSION_KEY].clock = clock
    with app.test_client() as test_client:
        yield test_client
    store.close()


def replay_records(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        (count,) = conn.execute("SELECT count(*) FROM node_signatures").fetchone()
    conn.close()
    return int(count)


def signed_at(capsys: pytest.CaptureFixture[str], moment: datetime, ip: str) -> dict[str, Any]:
    return register_body(capsys, ip=ip, timestamp=iso(moment))


def test_records_older_than_two_windows_are_pruned_and_the_table_stays_bounded(
    client: TestClient, clock: Clock, database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = []
    # One registration a minute for an hour of server time.
    for minute in range(60):
        body = signed_at(capsys, clock.now, ip=f"198.51.100.{minute}")
        assert client.post("/register", json=body).status_code == 200
        counts.append(replay_records(database))
        clock.now += timedelta(minutes=1)

    # Accepted within the last two windows (ten minutes): at most 11 records, ever.
    assert max(counts) == 11
    assert counts[-1] == 11


def test_a_pruned_signature_still_cannot_be_replayed(
    client: TestClient, clock: Clock, database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = signed_at(capsys, clock.now, ip="198.51.100.1")
    assert client.post("/register", json=old).status_code == 200
    clock.now += 2 * WINDOW + timedelta(seconds=1)
    fresh = signed_at(capsys, clock.now, ip="198.51.100.2")
    assert client.post("/register", json=fresh).status_code == 200
    assert replay_records(database) == 1

    replayed = client.post("/register", json=old)

    # Its timestamp left the window before its record was pruned: stale, not new.
    assert replayed.status_code == 400
    assert replayed.json()["errorCode"] == "STALE_TIMESTAMP"


def test_a_signature_within_two_windows_is_still_a_replay(
    client: TestClient, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signed a window ahead of the server clock, it is fresh for two windows after acceptance."""
    ahead = signed_at(capsys, clock.now + WINDOW, ip="198.51.100.1")
    assert client.post("/register", json=ahead).status_code == 200
    clock.now += 2 * WINDOW - timedelta(seconds=1)
    other = signed_at(capsys, clock.now, ip="198.51.100.2")
    assert client.post("/register", json=other).status_code == 200

    replayed = client.post("/register", json=ahead)

    assert replayed.status_code == 400
    assert replayed.json()["errorCode"] == "REPLAYED_SIGNATURE"
