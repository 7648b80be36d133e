"""`serve --workers N`: worker processes on one store, refused on memory://, stopped together."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import OWNER, bearer
from tests.servers import start_serve

pytestmark = pytest.mark.slow


def worker_processes(parent: int) -> set[int]:
    """Children of ``parent`` started by multiprocessing's spawn (not its resource tracker)."""
    workers = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            # The parent pid is the second field after the parenthesised command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
                workers.add(int(entry.name))
    return workers


def gone(pids: set[int]) -> bool:
    """True once none of the processes exists (waiting a little for them to be reaped)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_memory_store_with_several_workers_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flashback_contract",
            "serve",
            "--store",
            "memory://",
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "--workers 2 needs a store the workers share" in result.stderr
    assert "memory:// lives inside one process" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_workers_serve_one_store_and_stop_together_cleanly(
    tmp_path: Path, stop: signal.Signals
) -> None:
    store = f"sqlite:///{tmp_path / 'workers.sqlite3'}"
    served = start_serve("--store", store, "--workers", "2", cwd=tmp_path)
    try:
        workers = worker_processes(served.process.pid)
        created = httpx.post(
            served.base_url + "/repo/repo-acme-main/ai/apikey",
            json={"name": "seen by all", "aiType": "OPENAI"},
            headers=bearer(OWNER),
        ).json()["id"]
        # Fresh connections spread over the workers; each must see the write.
        listings = [
            httpx.get(served.base_url + "/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER))
            for _ in range(12)
        ]

        status = served.stop(stop)
    finally:
        served.kill()

    assert len(workers) == 2
    assert status == 0, served.output()
    assert gone(workers)
    assert all(created in [k["id"] for k in r.json()["apiKeys"]] for r in listings)
    assert "Traceback" not in served.output()
    assert "Stopped." in served.output()
