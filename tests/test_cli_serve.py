"""`flashback-contract serve`: prints what a person needs, serves, and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import OWNER, bearer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flashback_contract", "serve", "--port", str(port), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/organization/org-acme/key", timeout=1)
            return process, base_url
        except httpx.TransportError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"serve did not start: {process.communicate()[0]}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_store_and_tokens_then_stops_cleanly(
    tmp_path: Path, stop: signal.Signals
) -> None:
    process, base_url = start_serve(cwd=tmp_path)
    response = httpx.get(f"{base_url}/organization/org-acme/key", headers=bearer(OWNER))
    process.send_signal(stop)
    output, _ = process.communicate(timeout=30)

    assert response.status_code == 200
    assert process.returncode == 0, output
    assert f"Flashback mock serving on {base_url}" in output
    # The default store is a SQLite file in the working directory.
    assert "Store: sqlite:///flashback-contract.sqlite3" in output
    assert (tmp_path / "flashback-contract.sqlite3").is_file()
    for token in ("demo-acme-owner", "demo-acme-admin", "demo-acme-user", "demo-globex-owner"):
        assert token in output
    assert "Traceback" not in output
    # Nothing a user need not act on: no warning at all.
    assert "WARNING" not in output


def test_token_prints_only_the_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flashback_contract", "token", "--user", "user-acme-admin"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.count(".") == 2  # one JWT: header.claims.signature
    assert len(result.stdout.splitlines()) == 1


def test_serve_keeps_state_across_restarts_on_sqlite(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'kept.sqlite3'}"
    process, base_url = start_serve("--store", store, cwd=tmp_path)
    deleted = httpx.delete(
        f"{base_url}/repo/repo-acme-main/ai/apikey/aikey-acme-openai", headers=bearer(OWNER)
    )
    process.terminate()
    process.communicate(timeout=30)

    process, base_url = start_serve("--store", store, cwd=tmp_path)
    listed = httpx.get(f"{base_url}/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER))
    process.terminate()
    process.communicate(timeout=30)

    assert deleted.status_code == 200
    assert [k["id"] for k in listed.json()["apiKeys"]] == ["aikey-acme-anthropic"]


def test_serve_refuses_an_unsupported_store_url(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flashback_contract", "serve", "--store", "redis://x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "unsupported store URL 'redis://x'" in result.stderr
    assert "Traceback" not in result.stderr
