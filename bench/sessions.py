"""How long creating a session takes (the first request naming it), on memory and SQLite.

Run from the repository root after `make venv`:

    .venv/bin/python bench/sessions.py [--sessions 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from flashback_contract import Settings, create_app
from flashback_contract.mock.services import EXTENSION_KEY, Services


def creation_ms(store_url: str, count: int) -> list[float]:
    """Milliseconds to create each of ``count`` new sessions (a copy of the seed each)."""
    app = create_app(Settings(store_url=store_url, max_sessions=count + 1))
    services = app.app.extensions[EXTENSION_KEY]
    assert isinstance(services, Services)
    timings = []
    for n in range(count):
        started = time.perf_counter()
        services.sessions.use(f"bench-{n}", services.clock())
        timings.append((time.perf_counter() - started) * 1000)
    services.sessions.close()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"memory://": "memory://", "SQLite": f"sqlite:///{tmp}/bench.sqlite3"}
        print("| store | sessions | median ms | p90 ms | max ms |")
        print("|---|---:|---:|---:|---:|")
        for name, url in stores.items():
            timings = sorted(creation_ms(url, args.sessions))
            p90 = timings[int(len(timings) * 0.9) - 1]
            print(
                f"| {name} | {len(timings)} | {statistics.median(timings):.1f} "
                f"| {p90:.1f} | {timings[-1]:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
