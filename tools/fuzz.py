"""``make fuzz``: ``flashback-contract check`` with a large budget against a fresh mock.

Starts ``serve`` on a memory store and a free loopback port, runs every phase of the check
(positive and negative data, destructive operations included: the server is local and
throwaway) with ``--max-examples`` from ``FUZZ_EXAMPLES`` (default 500), then stops the server.
Fails when the check fails or when the server logged an unhandled error.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    examples = os.environ.get("FUZZ_EXAMPLES", "500")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="flashback-fuzz-")) / "server.log"
    serve = [sys.executable, "-m", "flashback_contract", "serve", "--store", "memory://"]
    with log.open("w") as sink:
        server = subprocess.Popen(
            [*serve, "--port", str(port), "--log-level", "warning"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base_url, timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(log.read_text(), file=sys.stderr)
                    return 3
                time.sleep(0.2)
        check = [sys.executable, "-m", "flashback_contract", "check", "--base-url", base_url]
        check += ["--token", "demo-acme-owner", "--allow-destructive"]
        check += ["--max-examples", examples, *sys.argv[1:]]
        print("$", " ".join(check[1:]), flush=True)
        status = subprocess.call(check)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    logged = log.read_text()
    if "Traceback" in logged or "unhandled error" in logged:
        print(f"The server logged unhandled errors: see {log}", file=sys.stderr)
        return status or 1
    print(f"Server log (no unhandled error): {log}")
    return status


if __name__ == "__main__":
    sys.exit(main())
