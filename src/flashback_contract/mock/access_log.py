"""One access line per request, with a request id the client can quote; and the server's logging.

A line names the method, the path template and operationId the request was routed to, the
status, the duration and the request id, never a token, a query string or a body. Middleware
that answers in place of the handler (``Prefer``, ``--fail-rate``) records what it forced in
``scope["state"]["forced"]``, and the line carries it.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flashback_contract.contract import HTTP_METHODS

log = logging.getLogger("flashback_contract.access")

REQUEST_ID_HEADER = b"x-request-id"
# What a client may choose as its request id: short, printable, nothing to inject into a log.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
LOG_FORMATS = ("text", "json")


def path_templates(specs: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """operationId to path template, for each (base path, spec) the app serves."""
    return {
        op["operationId"]: base_path + path
        for base_path, spec in specs
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def _printable(path: str) -> str:
    return path[:200].encode("unicode_escape").decode("ascii")


class AccessLogMiddleware:
    """The access log (in place of uvicorn's), and ``X-Request-Id`` on every response."""

    def __init__(self, app: ASGIApp, *, templates: dict[str, str], log_format: str) -> None:
        self.app = app
        self.templates = templates
        self.json_lines = log_format == "json"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self._request_id(scope)
        # Shared with every middleware below, even those that copy the scope.
        scope.setdefault("state", {})
        scope.setdefault("extensions", {})
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(self._line(scope, status, started, request_id.decode("latin-1")))

    @staticmethod
    def _request_id(scope: Scope) -> bytes:
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                if SANE_REQUEST_ID.fullmatch(value.decode("latin-1")):
                    return bytes(value)
                break
        # A name for one request, not a secret: Python's generator, no system call (os.urandom
        # is one per request). The generator is seeded again in every forked worker.
        return b"%016x" % random.getrandbits(64)

    def _line(self, scope: Scope, status: int, started: float, request_id: str) -> str:
        milliseconds = (time.perf_counter() - started) * 1000
        routed = scope["extensions"].get("connexion_routing", {}).get("operation_id")
        operation = None if routed is None else str(routed).rsplit(".", 1)[-1]
        path = self.templates.get(operation or "") or _printable(scope["path"])
        forced = scope["state"].get("forced")
        if self.json_lines:
            record = {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "method": scope["method"],
                "path": path,
                "operationId": operation,
                "status": status,
                "durationMs": round(milliseconds, 3),
                "requestId": request_id,
            }
            if forced:
                record["forced"] = forced
            return json.dumps(record, separators=(",", ":"))
        line = f"{scope['method']} {path} {operation or '-'} {status} {milliseconds:.2f}ms"
        line += f" id={request_id}"
        return f"{line} forced={forced}" if forced else line


def configure_logging(level: str) -> None:
    """The server's logging: its own lines at ``level``; the frameworks' chatter only at debug."""
    # uvicorn's "trace" is below debug.
    numeric = 5 if level.lower() == "trace" else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.getLogger().setLevel(numeric)
    # connexion logs every refused request at INFO ("No auth provided. Aborting with 401.").
    logging.getLogger("connexion").setLevel(
        logging.DEBUG if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(numeric)
