"""What the hostile-input checks add to every request, measured in isolation (microseconds).

``.venv/bin/python bench/limits_cost.py``: RequestLimits around an app that only reads the
body, against the bare app; the strict JSON parse against ``json.loads``. Best of three runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from flashback_contract.mock.limits import RequestLimits, _refuse_duplicate_keys

BODY = b'{"name": "CI key", "aiType": "OPENAI"}'
HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"user-agent", b"wrk"),
    (b"authorization", b"Bearer demo-acme-owner"),
    (b"accept", b"*/*"),
]
GET = {"type": "http", "method": "GET", "raw_path": b"/organization/org-acme/key"}
GET |= {"query_string": b"", "headers": HEADERS}
POST = GET | {"method": "POST", "raw_path": b"/repo/repo-acme-main/ai/apikey"}
POST["headers"] = [*HEADERS, (b"content-type", b"application/json"), (b"content-length", b"38")]


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def send(message: Any) -> None:
    pass


async def per_call(target: Callable[..., Awaitable[None]], scope: Any, n: int = 100_000) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await target(scope, receive, send)
    return (time.perf_counter() - start) / n * 1e6


async def main() -> None:
    limits = RequestLimits(app)
    for label, scope in (("GET", GET), ("POST", POST)):
        bare = min([await per_call(app, scope) for _ in range(3)])
        wrapped = min([await per_call(limits, scope) for _ in range(3)])
        print(f"RequestLimits, {label}: +{wrapped - bare:.1f} us per request")
    text = BODY.decode()

    def parse(**hooks: Any) -> float:
        start = time.perf_counter()
        for _ in range(100_000):
            json.loads(text, **hooks)
        return (time.perf_counter() - start) / 100_000 * 1e6

    plain = min(parse() for _ in range(3))
    strict = min(parse(object_pairs_hook=_refuse_duplicate_keys) for _ in range(3))
    print(f"strict JSON parse: +{strict - plain:.1f} us per body ({plain:.1f} us plain)")


if __name__ == "__main__":
    asyncio.run(main())
