"""The benchmark runs end to end (the mock's rows, a second per cell): no figures asserted."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench/run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_rounds_are_reported_as_one_row_per_cell_with_each_figure_the_median() -> None:
    run = _bench_module()
    cells = [
        run.Result("mock", "read", rps=r, p50_ms=p50, p99_ms=p99, non_2xx=0, errors=e, cpu_us=c)
        for r, p50, p99, e, c in [
            (100.0, 1.0, 9.0, 0, 500.0),
            (300.0, 3.0, 7.0, 1, 300.0),
            (200.0, 2.0, 8.0, 0, 400.0),
        ]
    ] + [run.Result("prism", "read", 50.0, 0.5, 5.0, 0, 0, cpu_us=250.0)]

    rows = run.medians(cells)

    assert [(r.contender, r.rps, r.p50_ms, r.p99_ms, r.cpu_us, r.errors) for r in rows] == [
        ("mock", 200.0, 2.0, 8.0, 400.0, 1),
        ("prism", 50.0, 0.5, 5.0, 250.0, 0),
    ]
    # Start-up figures too, and an even number of rounds takes the mean of the middle two.
    loads = run.median_loads([run.Loaded("mock", 1.0, 100.0), run.Loaded("mock", 2.0, 110.0)])
    assert [(x.contender, x.seconds, x.rss_mb) for x in loads] == [("mock", 1.5, 105.0)]


def test_each_large_cell_is_compared_with_the_same_store_and_workload_on_the_demo_data() -> None:
    run = _bench_module()

    def cell(contender: str, workload: str, cpu: float, p50: float, p99: float) -> object:
        return run.Result(contender, workload, 1000.0, p50, p99, 0, 0, cpu_us=cpu)

    results = [
        cell("mock, memory://", "read", 400.0, 0.5, 10.0),
        cell("mock, memory://", "write", 500.0, 1.0, 20.0),
        cell("mock, SQLite (default)", "read", 300.0, 0.4, 8.0),
        cell("Prism 5 (stateless)", "read", 200.0, 0.3, 30.0),
        cell("mock, memory://, 100k keys", "read", 440.0, 0.6, 9.0),
        cell("mock, memory://, 100k keys", "write", 450.0, 1.5, 30.0),
        cell("mock, SQLite, 100k keys", "read", 600.0, 0.4, 16.0),
        # No demo-data cell to compare with: left out, not divided by zero.
        cell("mock, PostgreSQL, 100k keys", "read", 900.0, 2.0, 40.0),
    ]

    rows = [
        (c, w, round(a, 2), round(b, 2), round(d, 2)) for c, w, a, b, d in run.against_demo(results)
    ]

    assert rows == [
        ("mock, memory://, 100k keys", "read", 1.1, 1.2, 0.9),
        ("mock, memory://, 100k keys", "write", 0.9, 1.5, 1.5),
        ("mock, SQLite, 100k keys", "read", 2.0, 1.0, 2.0),
    ]
