"""Servers on real sockets: an ASGI app in a thread, or ``flashback-contract serve`` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", **options: Any) -> Iterator[str]:
    """Serve ``app`` on a free port (uvicorn ``options`` added); yield its base URL; stop it."""
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    """A ``flashback-contract serve`` process (and its workers) started by a test."""

    process: subprocess.Popen[str]
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def stop(self, stop: signal.Signals = signal.SIGTERM) -> int:
        """Stop it as a person would (SIGTERM by default); its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(stop)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL the server and every worker at once: nothing gets to shut down cleanly."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)


def start_serve(*args: str, cwd: Path, env: dict[str, str] | None = None) -> ServeProcess:
    """Start ``serve`` on a free port in its own process group; return once it answers."""
    port = free_port()
    log = cwd / f"serve-{port}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "flashback_contract", "serve", "--port", str(port), *args],
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
    served = ServeProcess(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{served.base_url}/organization/org-acme/key", timeout=2)
            return served
        except httpx.TransportError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    served.kill()
    raise AssertionError(f"serve did not start: {served.output()}")


@contextmanager
def serving(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Iterator[ServeProcess]:
    """``start_serve``, stopped with SIGTERM afterwards (and killed if that fails)."""
    served = start_serve(*args, cwd=cwd, env=env)
    try:
        yield served
    finally:
        try:
            served.stop()
        finally:
            served.kill()
