"""Side-by-side load benchmark: the mock on each store, and Prism, under the same wrk load.

Run from the repository root after `make venv` (needs wrk, npm, and PostgreSQL for that row):

    .venv/bin/python bench/run.py [--duration 10] [--connections 16]

The server runs on CPU 0 and wrk on CPU 1 (taskset), so they do not share a core.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TOKEN = "Bearer demo-acme-owner"
PG = os.environ.get("FLASHBACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Workload:
    name: str
    path: str
    script: str | None = None


WORKLOADS = [
    Workload("read: list AI keys", "/repo/repo-acme-main/ai/apikey"),
    Workload("write: create + list", "/", script=str(BENCH / "create_and_list.lua")),
    Workload("refused: other org's keys (403)", "/organization/org-globex/key"),
]


@dataclass
class Result:
    contender: str
    workload: str
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, headers={"Authorization": TOKEN}, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def postgres_schema() -> Iterator[str]:
    base = sa.make_url(PG).set(drivername="postgresql+psycopg")
    schema = f"fbbench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def running(command: list[str], url: str, env: dict[str, str] | None = None) -> Iterator[str]:
    process = subprocess.Popen(
        ["taskset", "-c", "0", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=tempfile.gettempdir(),
    )
    try:
        wait_ready(url + "/repo/repo-acme-main/ai/apikey")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def mock(store: str) -> tuple[list[str], str]:
    port = free_port()
    command = [str(ROOT / ".venv/bin/flashback-contract"), "serve", "--port", str(port)]
    return [*command, "--store", store, "--log-level", "warning"], f"http://127.0.0.1:{port}"


def prism() -> tuple[list[str], str]:
    port = free_port()
    binary = BENCH / "node_modules/.bin/prism"
    command = [str(binary), "mock", str(ROOT / "openapi.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    return command, f"http://127.0.0.1:{port}"


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, workload: Workload, duration: int, connections: int) -> Result:
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    command += ["--latency", "-H", f"Authorization: {TOKEN}"]
    if workload.script:
        command += ["-s", workload.script]
    output = subprocess.run(
        [*command, url + workload.path], capture_output=True, text=True, check=True
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return Result(
        contender="",
        workload=workload.name,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),  # type: ignore[index]
        p50_ms=to_ms(latency["50"]),
        p99_ms=to_ms(latency["99"]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def reset(url: str) -> None:
    """Put the demo data back between workloads (the mock only; Prism keeps nothing)."""
    httpx.post(url + "/__mock/reset", timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install wrk util-linux)")
    if not (BENCH / "node_modules/.bin/prism").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True)

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp, postgres_schema() as pg_url:
        contenders = {
            "mock, memory://": mock("memory://"),
            "mock, SQLite (default)": mock(f"sqlite:///{tmp}/bench.sqlite3"),
            "mock, PostgreSQL": mock(pg_url),
            "Prism (stateless)": prism(),
        }
        for name, (command, url) in contenders.items():
            with running(command, url):
                for workload in WORKLOADS:
                    if not name.startswith("Prism"):
                        reset(url)
                    wrk(url, workload, args.warmup, args.connections)
                    if not name.startswith("Prism"):
                        reset(url)
                    result = wrk(url, workload, args.duration, args.connections)
                    result.contender = name
                    results.append(result)
                    print(f"{name:<24} {workload.name:<34} {result.rps:>8.0f} req/s", flush=True)

    print()
    print(
        f"{args.duration} s per cell, {args.connections} connections, wrk on CPU 1, server on CPU 0"
    )
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    print("| contender | workload | req/s | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.contender} | {r.workload} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.non_2xx} | {r.errors} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
