"""The benchmark runs end to end (the mock's rows, a second per cell): no figures asserted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("taskset") is None,
    reason="wrk and taskset are needed (make bench installs wrk)",
)
def test_bench_smoke_run_prints_every_workload_of_the_mock() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| mock, memory:// |")]
    workloads = [row.split(" | ")[1] for row in rows]
    assert workloads[:4] == [
        "read: GET own org keys",
        "refused: other org's keys (403)",
        "write: create + delete an AI key",
        "read, 1 connection",
    ]
    # Every cell measured something: requests answered and server CPU counted.
    for row in rows[:4]:
        cells = row.strip("| ").split(" | ")
        assert float(cells[2]) > 0 and float(cells[5]) > 0
    # The refused workload is refused (403), the others succeed.
    non_2xx = [int(row.strip("| ").split(" | ")[-1]) for row in rows[:4]]
    assert non_2xx[1] > 0 and non_2xx[0] == non_2xx[2] == non_2xx[3] == 0
