"""Side by side under one wrk load: the mock on each store, Prism, and a bare ASGI app.

Run from the repository root (`make bench` installs wrk and Prism when it can):

    .venv/bin/python bench/run.py [--duration 10] [--rounds 3] [--large] [--smoke]

The server runs on CPU 0 and wrk on CPU 1 (taskset), so they do not share a core. Each cell
reports the server process's CPU time per request (utime + stime over the requests wrk
counted), which is steadier than req/s on a machine others are using.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TOKEN = "Bearer demo-acme-owner"
PG = os.environ.get("FLASHBACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PINNED = (os.cpu_count() or 1) >= 2
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Workload:
    name: str
    path: str
    script: str | None = None
    connections: int | None = None


READ = Workload("read: GET own org keys", "/organization/org-acme/key")
REFUSED = Workload("refused: other org's keys (403)", "/organization/org-globex/key")
WRITE = Workload(
    "write: create + delete an AI key",
    "/repo/repo-acme-main/ai/apikey",
    script=str(BENCH / "create_and_delete.lua"),
)
READ_ONE = Workload("read, 1 connection", READ.path, connections=1)
WORKLOADS = [READ, REFUSED, WRITE]


@dataclass
class Result:
    contender: str
    workload: str
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    requests: int = 0
    cpu_us: float = 0.0


@dataclass
class Loaded:
    contender: str
    seconds: float
    rss_mb: float
    extra: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with status {process.returncode}")
        try:
            httpx.get(url + READ.path, headers={"Authorization": TOKEN}, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def pinned(cpu: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if PINNED else command


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    """A schema of its own on the test PostgreSQL, dropped afterwards; None if unreachable."""
    base = sa.make_url(PG).set(drivername="postgresql+psycopg")
    schema = f"fbbench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError:
        engine.dispose()
        yield None
        return
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def serving(command: list[str], url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server on CPU 0; yield its process once it answers."""
    process = subprocess.Popen(
        pinned(0, command),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tempfile.gettempdir(),
    )
    try:
        wait_ready(url, process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


@contextmanager
def running(command: list[str], url: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a server on CPU 0; yield its URL once it answers (bench/proxy.py uses this)."""
    del env
    with serving(command, url):
        yield url


def mock(store: str, *extra: str, log_level: str = "warning") -> tuple[list[str], str]:
    """The mock's command; its access lines (serve's default, level info) off unless asked."""
    port = free_port()
    command = [str(ROOT / ".venv/bin/flashback-contract"), "serve", "--port", str(port)]
    command += ["--store", store, "--log-level", log_level, *extra]
    return command, f"http://127.0.0.1:{port}"


def prism() -> tuple[list[str], str]:
    port = free_port()
    binary = BENCH / "node_modules/.bin/prism"
    command = [str(binary), "mock", str(ROOT / "openapi.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    return command, f"http://127.0.0.1:{port}"


def bare_asgi() -> tuple[list[str], str]:
    port = free_port()
    command = [str(ROOT / ".venv/bin/python"), "-m", "uvicorn", "bare_asgi:app"]
    command += ["--app-dir", str(BENCH), "--port", str(port), "--log-level", "warning"]
    return [*command, "--no-access-log"], f"http://127.0.0.1:{port}"


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]


def wrk(
    url: str, workload: Workload, duration: int, connections: int, pid: int | None = None
) -> Result:
    connections = workload.connections or connections
    command = pinned(1, ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"])
    command += ["-H", f"Authorization: {TOKEN}"]
    if workload.script:
        command += ["-s", workload.script]
    before = cpu_seconds(pid) if pid else 0.0
    output = subprocess.run(
        [*command, url + workload.path], capture_output=True, text=True, check=True
    ).stdout
    used = cpu_seconds(pid) - before if pid else 0.0
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    requests = int(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    return Result(
        contender="",
        workload=workload.name,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),  # type: ignore[index]
        p50_ms=to_ms(latency["50"]),
        p99_ms=to_ms(latency["99"]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        requests=requests,
        cpu_us=used * 1e6 / requests if requests else 0.0,
    )


def reset(url: str) -> None:
    """Put the demo data back between workloads (the mock only)."""
    httpx.post(url + "/__mock/reset", timeout=120)


def measure_all(
    name: str,
    command: list[str],
    url: str,
    args: argparse.Namespace,
    *,
    reset_first: bool,
    workloads: list[Workload],
) -> tuple[list[Result], Loaded]:
    started = time.monotonic()
    results = []
    with serving(command, url) as process:
        loaded = Loaded(name, time.monotonic() - started, rss_mb(process.pid))
        for workload in workloads:
            if reset_first:
                reset(url)
            if args.warmup:
                wrk(url, workload, args.warmup, args.connections)
            result = wrk(url, workload, args.duration, args.connections, process.pid)
            result.contender = name
            results.append(result)
            print(
                f"  {name:<34} {workload.name:<34} {result.rps:>8.0f} req/s "
                f"{result.cpu_us:>7.0f} CPU-us/req",
                flush=True,
            )
        loaded.extra["rss_after_mb"] = rss_mb(process.pid)
    return results, loaded


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every contender this many times, in turn; each figure is the median",
    )
    parser.add_argument(
        "--large", action="store_true", help="add the 100,000-key rows (load time and memory)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only contenders whose name contains TEXT (repeatable)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the mock on memory:// only, one second per cell, no Prism (the test suite's run)",
    )
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.warmup = 1, 0
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: `make bench` installs it (apt-get install wrk util-linux)")
    if not args.smoke and not (BENCH / "node_modules/.bin/prism").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True)

    print(f"load average before: {load_average()}", flush=True)
    results: list[Result] = []
    loads: list[Loaded] = []
    workloads = [*WORKLOADS, READ_ONE]
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        pg_url = stack.enter_context(postgres_schema())
        # name -> (command, URL, workloads, reset the state before each workload)
        contenders: dict[str, tuple[list[str], str, list[Workload], bool]] = {
            "mock, memory://": (*mock("memory://"), workloads, True)
        }
        if not args.smoke:
            sqlite = mock(f"sqlite:///{tmp}/bench.sqlite3")
            contenders["mock, SQLite (default)"] = (*sqlite, workloads, True)
            # The request journal is on by default: what it costs on the hot path.
            no_journal = mock(f"sqlite:///{tmp}/bench-nojournal.sqlite3", "--journal-size", "0")
            contenders["mock, SQLite, no journal"] = (*no_journal, workloads, True)
            memory = mock("memory://", "--journal-size", "0")
            contenders["mock, memory://, no journal"] = (*memory, workloads, True)
            # serve's default level: one access line per request, to stderr (/dev/null here).
            logged = mock("memory://", log_level="info")
            contenders["mock, memory://, access log on"] = (*logged, workloads, True)
            if pg_url:
                contenders["mock, PostgreSQL"] = (*mock(pg_url), workloads, True)
            contenders["Prism 5 (stateless)"] = (*prism(), workloads, False)
            contenders["bare ASGI app, uvicorn"] = (*bare_asgi(), workloads, False)
        large: tuple[Path, dict[str, str]] | None = None
        if args.large:
            large = large_stores(
                Path(tmp), stack.enter_context(postgres_schema()) if pg_url else None
            )
            seed, stores = large
            for label, store in stores.items():
                # No reset between workloads: it would load the seed again.
                command = mock(store, "--seed", str(seed), "--reset")
                contenders[f"mock, {label}, 100k keys"] = (*command, workloads, False)
        if args.only:
            contenders = {
                name: contender
                for name, contender in contenders.items()
                if any(text in name for text in args.only)
            }
        # Round after round over every contender, so that a change in the machine's speed
        # during the run reaches all of them; the medians are reported.
        for _ in range(max(1, args.rounds)):
            for name, (command, url, measured, reset_first) in contenders.items():
                rows, loaded = measure_all(
                    name, command, url, args, reset_first=reset_first, workloads=measured
                )
                results += rows
                loads.append(loaded)
        results, loads = medians(results), median_loads(loads)
        if large is not None:
            loads += _loading(*large)
    print(f"load average after: {load_average()}\n", flush=True)
    print_tables(args, results, loads)
    return 0


# Each 100,000-key contender and the same store on the demo data.
DEMO_OF = {
    "mock, memory://, 100k keys": "mock, memory://",
    "mock, SQLite, 100k keys": "mock, SQLite (default)",
    "mock, PostgreSQL, 100k keys": "mock, PostgreSQL",
}


def against_demo(results: list[Result]) -> list[tuple[str, str, float, float, float]]:
    """Each 100k cell's CPU-us, p50 and p99 over the same store's and workload's on the demo
    data: ``(contender, workload, cpu, p50, p99)``, for the cells both sides measured."""
    cells = {(r.contender, r.workload): r for r in results}
    rows = []
    for large in results:
        demo = cells.get((DEMO_OF.get(large.contender, ""), large.workload))
        if demo is None or not (demo.cpu_us and demo.p50_ms and demo.p99_ms):
            continue
        rows.append(
            (
                large.contender,
                large.workload,
                large.cpu_us / demo.cpu_us,
                large.p50_ms / demo.p50_ms,
                large.p99_ms / demo.p99_ms,
            )
        )
    return rows


def medians(results: list[Result]) -> list[Result]:
    """One row per contender and workload, each figure the median of its rounds."""
    cells: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        cells.setdefault((result.contender, result.workload), []).append(result)
    return [
        Result(
            contender=contender,
            workload=workload,
            rps=median([r.rps for r in rounds]),
            p50_ms=median([r.p50_ms for r in rounds]),
            p99_ms=median([r.p99_ms for r in rounds]),
            non_2xx=round(median([r.non_2xx for r in rounds])),
            errors=sum(r.errors for r in rounds),
            requests=sum(r.requests for r in rounds),
            cpu_us=median([r.cpu_us for r in rounds]),
        )
        for (contender, workload), rounds in cells.items()
    ]


def median_loads(loads: list[Loaded]) -> list[Loaded]:
    starts: dict[str, list[Loaded]] = {}
    for loaded in loads:
        starts.setdefault(loaded.contender, []).append(loaded)
    return [
        Loaded(
            name,
            median([x.seconds for x in rounds]),
            median([x.rss_mb for x in rounds]),
            {"rss_after_mb": median([x.extra.get("rss_after_mb", 0.0) for x in rounds])},
        )
        for name, rounds in starts.items()
    ]


def large_stores(tmp: Path, pg_url: str | None) -> tuple[Path, dict[str, str]]:
    """The 100,000-key seed as JSON, and a store of each kind to load it into."""
    sys.path.insert(0, str(BENCH))
    from large_seed import large_seed

    seed = tmp / "large-seed.json"
    seed.write_text(json.dumps(large_seed()))
    stores = {"memory://": "memory://", "SQLite": f"sqlite:///{tmp}/large.sqlite3"}
    if pg_url:
        stores["PostgreSQL"] = pg_url
    return seed, stores


def _loading(seed: Path, stores: dict[str, str]) -> list[Loaded]:
    """The same data as YAML at start-up, and both formats through ``POST /__mock/state``."""
    from large_seed import write_yaml  # on the path since large_stores

    as_yaml = write_yaml(json.loads(seed.read_text("utf-8")), seed.with_suffix(".yaml"))
    loads = []
    for label, store in stores.items():
        if label == "PostgreSQL":
            continue  # start-up with JSON is measured above; imports are the embedded stores'
        fresh = store.replace("large.sqlite3", "large-load.sqlite3")
        started = time.monotonic()
        command, url = mock(fresh, "--seed", str(as_yaml), "--reset")
        with serving(command, url) as process:
            loads.append(
                Loaded(
                    f"mock, {label}, 100k keys, YAML seed",
                    time.monotonic() - started,
                    rss_mb(process.pid),
                )
            )
        for document, media_type in ((seed, "application/json"), (as_yaml, "application/yaml")):
            command, url = mock(fresh, "--reset")
            with serving(command, url) as process:
                body = document.read_bytes()
                started = time.monotonic()
                response = httpx.post(
                    url + "/__mock/state",
                    content=body,
                    headers={"Content-Type": media_type},
                    timeout=600,
                )
                response.raise_for_status()
                loads.append(
                    Loaded(
                        f"mock, {label}, 100k keys, {document.suffix[1:].upper()} "
                        "by POST /__mock/state",
                        time.monotonic() - started,
                        rss_mb(process.pid),
                    )
                )
    return loads


def print_tables(args: argparse.Namespace, results: list[Result], loads: list[Loaded]) -> None:
    def baseline(prefix: str) -> dict[str, float]:
        return {r.workload: r.cpu_us for r in results if r.contender.startswith(prefix)}

    prism_cpu, bare_cpu = baseline("Prism"), baseline("bare ASGI")

    def ratio(value: float, base: dict[str, float], workload: str) -> str:
        return f"{value / base[workload]:.2f}" if base.get(workload) else "-"

    rounds = f"; median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(
        f"{args.duration} s per cell after {args.warmup} s of warm-up, {args.connections} "
        f"connections (1 on the 1-connection row), wrk -t1 on CPU 1, server on CPU 0{rounds}"
    )
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    print(
        "| contender | workload | req/s | p50 ms | p99 ms | CPU-us/req | CPU x Prism "
        "| CPU x bare | non-2xx |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.contender} | {r.workload} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.cpu_us:.0f} | {ratio(r.cpu_us, prism_cpu, r.workload)} "
            f"| {ratio(r.cpu_us, bare_cpu, r.workload)} | {r.non_2xx + r.errors} |"
        )
    flat = against_demo(results)
    if flat:
        print("\n| with 100,000 keys | workload | CPU x demo data | p50 x demo | p99 x demo |")
        print("|---|---|---:|---:|---:|")
        for contender, workload, cpu, p50, p99 in flat:
            print(f"| {contender} | {workload} | {cpu:.2f} | {p50:.2f} | {p99:.2f} |")
    print(
        "\n| server | start-up incl. seed load (or the import) s | RSS after start "
        "(or the import) MB | RSS at the end MB |"
    )
    print("|---|---:|---:|---:|")
    for loaded in loads:
        after = loaded.extra.get("rss_after_mb")
        print(
            f"| {loaded.contender} | {loaded.seconds:.1f} | {loaded.rss_mb:.0f} "
            f"| {f'{after:.0f}' if after else '-'} |"
        )


if __name__ == "__main__":
    sys.exit(main())
