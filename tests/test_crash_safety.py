"""SIGKILL during concurrent writes: every acknowledged write survives, the database is intact."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from flashback_contract.domain import EventContext, EventType
from tests.conftest import OWNER, bearer
from tests.servers import serving, start_serve

pytestmark = pytest.mark.slow

AI_KEYS = "/repo/repo-acme-main/ai/apikey"
WRITERS = 4
ACKS_BEFORE_KILL = 12
WRITTEN_NAME = "crash-test"


def write_until_killed(base_url: str, acknowledged: list[str], stop: threading.Event) -> None:
    """Create keys until the server stops answering; record those it acknowledged."""
    with httpx.Client(headers=bearer(OWNER), timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post(
                    base_url + AI_KEYS, json={"name": WRITTEN_NAME, "aiType": "OPENAI"}
                )
            except httpx.TransportError:
                return
            if response.status_code == 201:  # the documented status of a creation
                acknowledged.append(response.json()["id"])


def integrity(database: Path) -> tuple[str, int]:
    """PRAGMA integrity_check, and how many written keys lack the event of their creation."""
    with sqlite3.connect(database) as conn:
        (check,) = conn.execute("PRAGMA integrity_check").fetchone()
        (orphans,) = conn.execute(
            "SELECT count(*) FROM repo_ai_api_keys WHERE name = ? AND id NOT IN "
            "(SELECT context_id FROM system_events WHERE context = ? AND event = ?)",
            (WRITTEN_NAME, int(EventContext.aillmapikey), int(EventType.created)),
        ).fetchone()
    conn.close()
    return str(check), int(orphans)


@pytest.mark.parametrize(("workers", "rounds"), [(1, 2), (2, 2)])
def test_sigkill_during_writes_loses_no_acknowledged_write(
    tmp_path: Path, workers: int, rounds: int
) -> None:
    database = tmp_path / "crash.sqlite3"
    store = f"sqlite:///{database}"
    acknowledged: list[str] = []
    for _ in range(rounds):
        served = start_serve("--store", store, "--workers", str(workers), cwd=tmp_path)
        stop = threading.Event()
        acked_before = len(acknowledged)
        with ThreadPoolExecutor(WRITERS) as pool:
            for _ in range(WRITERS):
                pool.submit(write_until_killed, served.base_url, acknowledged, stop)
            deadline = time.monotonic() + 60
            while len(acknowledged) < acked_before + ACKS_BEFORE_KILL:
                assert time.monotonic() < deadline, served.output()
                time.sleep(0.01)
            served.kill()
            stop.set()

    with serving("--store", store, cwd=tmp_path) as served:
        listed = httpx.get(served.base_url + AI_KEYS, headers=bearer(OWNER)).json()["apiKeys"]

    assert set(acknowledged) <= {k["id"] for k in listed}
    assert integrity(database) == ("ok", 0)
