"""The validating proxy's cost: the mock direct, through `flashback-contract proxy`, and through
`prism proxy`, under the same wrk load.

Run from the repository root after `make venv` (needs wrk and npm):

    .venv/bin/python bench/proxy.py [--duration 10] [--connections 16]

The mock and the proxy in front of it share CPU 0, wrk runs on CPU 1 (taskset): a proxy's cost
shows as the throughput it takes from the pair.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The sibling benchmark script.
from run import (
    BENCH,
    ROOT,
    WORKLOADS,
    Result,
    Workload,
    free_port,
    mock,
    reset,
    running,
    wrk,
)


def flashback_proxy(upstream: str) -> tuple[list[str], str]:
    port = free_port()
    command = [str(ROOT / ".venv/bin/flashback-contract"), "proxy", "--upstream", upstream]
    return [*command, "--port", str(port), "--log-level", "warning"], f"http://127.0.0.1:{port}"


def prism_proxy(upstream: str) -> tuple[list[str], str]:
    port = free_port()
    binary = BENCH / "node_modules/.bin/prism"
    command = [str(binary), "proxy", str(ROOT / "openapi.yaml"), upstream]
    return [*command, "-h", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}"


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
    command, mock_url = mock("memory://")
    with running(command, mock_url):
        contenders = {
            "mock direct": None,
            "through flashback-contract proxy": flashback_proxy(mock_url),
            "through prism proxy": prism_proxy(mock_url),
        }
        for name, front in contenders.items():
            for workload in WORKLOADS:
                if front is None:
                    result = measure(mock_url, mock_url, workload, args)
                else:
                    with running(*front) as url:
                        result = measure(url, mock_url, workload, args)
                result.contender = name
                results.append(result)
                print(f"{name:<34} {workload.name:<34} {result.rps:>8.0f} req/s", flush=True)

    direct = {r.workload: r.rps for r in results if r.contender == "mock direct"}
    print()
    print(f"{args.duration} s per cell, {args.connections} connections, wrk on CPU 1, ", end="")
    print("mock and proxy on CPU 0")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    print("| path | workload | req/s | of direct | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        share = r.rps / direct[r.workload] if direct[r.workload] else 0.0
        print(
            f"| {r.contender} | {r.workload} | {r.rps:.0f} | {share:.2f} | {r.p50_ms:.2f} "
            f"| {r.p99_ms:.2f} | {r.non_2xx} | {r.errors} |"
        )
    return 0


def measure(url: str, mock_url: str, workload: Workload, args: argparse.Namespace) -> Result:
    """Warm up, then measure, each from the reset demo data."""
    reset(mock_url)
    wrk(url, workload, args.warmup, args.connections)
    reset(mock_url)
    return wrk(url, workload, args.duration, args.connections)


if __name__ == "__main__":
    sys.exit(main())
