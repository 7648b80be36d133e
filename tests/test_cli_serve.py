"""`flashback-contract serve`: prints what a person needs, serves, and stops cleanly."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flashback_contract.cli import build_parser
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


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=30)
    return output


def test_a_restart_keeps_the_data_says_so_and_reset_starts_over(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'kept.sqlite3'}"
    process, base_url = start_serve("--store", store, cwd=tmp_path)
    deleted = httpx.delete(
        f"{base_url}/repo/repo-acme-main/ai/apikey/aikey-acme-openai", headers=bearer(OWNER)
    )
    first = stop(process)

    process, base_url = start_serve("--store", store, cwd=tmp_path)
    kept = httpx.get(f"{base_url}/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER))
    second = stop(process)

    process, base_url = start_serve("--store", store, "--reset", cwd=tmp_path)
    reset = httpx.get(f"{base_url}/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER))
    third = stop(process)

    assert deleted.status_code == 200
    assert "Data: seeded from the demo fixture" in first
    assert [k["id"] for k in kept.json()["apiKeys"]] == ["aikey-acme-anthropic"]
    # 4 organization keys and 2 active AI API keys are left of the demo fixture's 4 + 3.
    assert (
        "Data: kept existing data (6 keys); `--reset` or `POST /__mock/reset` to start over\n"
        in second
    )
    assert "Data: reset to the demo fixture" in third
    assert {k["id"] for k in reset.json()["apiKeys"]} == {
        "aikey-acme-openai",
        "aikey-acme-anthropic",
    }


def test_a_seed_file_on_a_store_with_data_is_named_as_not_loaded(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'kept.sqlite3'}"
    seed = tmp_path / "small.yaml"
    seed.write_text(
        "organizations: [{id: org-small, name: Small}]\n"
        "users: [{id: user-small, org: org-small, role: OWNER, token: small-owner}]\n"
    )
    stop(start_serve("--store", store, cwd=tmp_path)[0])

    process, _ = start_serve("--store", store, "--seed", str(seed), cwd=tmp_path)
    banner = stop(process)

    assert "Data: kept existing data (7 keys)" in banner
    assert f"(both load {seed}, which was not loaded now)" in banner
    # The banner lists the tokens the store holds, not the unloaded file's.
    assert "demo-acme-owner" in banner and "small-owner" not in banner


def test_the_banner_names_injected_latency_and_faults(tmp_path: Path) -> None:
    process, _ = start_serve(
        "--store", "memory://", "--delay-ms", "250", "--fail-rate", "0.05", cwd=tmp_path
    )
    banner = stop(process)

    assert (
        "Injected: every operation delayed 250 ms; 5% of requests answered with the documented 500"
        in banner
    )


def test_without_injection_the_banner_says_nothing_about_it(tmp_path: Path) -> None:
    process, _ = start_serve("--store", "memory://", cwd=tmp_path)

    assert "Injected" not in stop(process)


def test_a_busy_port_is_one_line_before_any_banner_and_exit_3(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "flashback_contract", "serve", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"flashback-contract: port {port} on 127.0.0.1 is already in use: stop the other "
        "server or choose another port with --port (make serve ARGS='--port 9000')\n"
    )


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


def _options(command: str) -> list[argparse.Action]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in subparsers.choices[command]._actions if a.dest != "help"]


@pytest.mark.parametrize("command", ["serve", "node-sign", "token", "check"])
def test_every_option_has_help(command: str) -> None:
    undocumented = [a.option_strings[0] for a in _options(command) if not a.help]

    assert undocumented == []


def test_serve_help_describes_the_command_and_its_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())

    assert "Serve the stateful mock of the Flashback API, routed by openapi.yaml" in text
    assert "--host HOST interface to listen on (default 127.0.0.1" in text
    assert "--port PORT TCP port (default 8080)" in text
    assert "server log level (default info)" in text
    assert "--reset replace the store's data with the seed before serving" in text
    assert "also allow this request header in CORS preflights" in text
    assert "3 the port cannot be used" in text


def test_node_sign_help_explains_region_version_and_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node-sign", "--help"])
    text = " ".join(capsys.readouterr().out.split())

    assert "--region REGION the provider region the node serves" in text
    assert "--version VERSION the node software's version" in text
    assert "--status STATUS the node's status as it reports it" in text
