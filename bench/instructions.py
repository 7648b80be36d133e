"""Instructions per request of the mock, counted by callgrind: the same figure on a busy machine.

    .venv/bin/python bench/instructions.py [--store memory://] [--workload read] [--requests 200]

The mock runs under ``valgrind --tool=callgrind`` with counting off while it starts; after 30
requests of warm-up counting is switched on (``callgrind_control -i on``), one client sends the
requests one after another, and the total is divided by them (a write is one create and one
delete: two requests). The kernel's work (system calls) is not counted, and an instruction is
not a microsecond, but the count is the same from run to run, whatever else the machine does:
wall-clock cells of ``bench/run.py`` differ by 10 % and more on a shared machine, so small
changes are compared here. To compare two versions, run each one's ``src`` with
``PYTHONPATH=<checkout>/src``. valgrind comes from Debian (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from run import READ, REFUSED, TOKEN, WRITE  # bench/run.py's workloads, beside this file

WARM_UP = 30


def one(client: httpx.Client, workload: str) -> None:
    if workload == "read":
        assert client.get(READ.path).status_code == 200
    elif workload == "refused":
        assert client.get(REFUSED.path).status_code == 403
    else:
        # What bench/create_and_delete.lua sends.
        created = client.post(WRITE.path, json={"name": "bench", "aiType": "OPENAI"})
        assert created.status_code < 300, created.text
        deleted = client.delete(f"{WRITE.path}/{created.json()['id']}")
        assert deleted.status_code < 300, deleted.text


def total_instructions(out: Path) -> int:
    """The profile's total (its "totals:" line; "summary:" counts only what was dumped)."""
    counts = [
        int(line.split()[1])
        for line in out.read_text(errors="replace").splitlines()
        if line.startswith(("summary:", "totals:"))
    ]
    if not counts:
        raise RuntimeError(f"no totals in {out}")
    return max(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        default="memory://",
        help='a store URL; "{tmp}" in it is a fresh directory (sqlite:///{tmp}/s.sqlite3)',
    )
    parser.add_argument("--workload", choices=["read", "refused", "write"], default="read")
    parser.add_argument("--requests", type=int, default=200, help="(write: pairs of requests)")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        store = args.store.replace("{tmp}", tmp)
        port = 9000 + os.getpid() % 1000
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        command += [f"--callgrind-out-file={out}", sys.executable, "-m", "flashback_contract"]
        command += ["serve", "--port", str(port), "--store", store, "--log-level", "warning"]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": TOKEN}, timeout=120
            )
            deadline = time.monotonic() + 600
            while True:
                try:
                    client.get("/organization/org-acme/key")
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the mock did not start under valgrind") from None
                    time.sleep(0.5)
            for _ in range(WARM_UP):
                one(client, args.workload)
            control = ["callgrind_control", "-i"]
            subprocess.run([*control, "on", str(server.pid)], check=True, capture_output=True)
            for _ in range(args.requests):
                one(client, args.workload)
            subprocess.run([*control, "off", str(server.pid)], check=True, capture_output=True)
        finally:
            server.terminate()
            server.wait()
        requests = args.requests * (2 if args.workload == "write" else 1)
        per_request = total_instructions(out) / requests
    print(f"{args.workload} on {args.store}: {per_request / 1000:,.0f}k instructions per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
