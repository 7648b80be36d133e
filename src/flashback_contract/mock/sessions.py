"""Sessions by path prefix or header, and the request journal, for parallel frontend test suites.

``/__session/{name}/...`` or ``X-Mock-Session: {name}`` selects an isolated copy of the seeded
state; the request then runs as if the prefix were not there. Every request outside the control
API and Swagger UI is written to its session's journal as its last byte is sent, so a test
reading the journal after a response always finds that response there: before, where the journal
is a database other processes read too; in memory, right after it is handed to the server and
before the event loop runs anything else, so the next request, of any client, finds it there.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flashback_contract.domain import format_iso
from flashback_contract.store import SessionCatalog, Store
from flashback_contract.store.sessions import SessionLimitReached
from flashback_contract.web import envelope_response

SESSION_HEADER = "X-Mock-Session"
PREFIX = "/__session/"
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Request body fields the journal never shows: node signatures, and anything named like a secret.
REDACTED = re.compile(r"secret|password|token|signature|private", re.IGNORECASE)
REDACTION = "[redacted]"
# Journalled requests keep at most this much of their body.
MAX_JOURNAL_BODY = 64 * 1024
# Paths of the mock itself, not of the contract: neither journalled nor counted.
SWAGGER_UI = ("/ui", "/openapi.json", "/openapi.yaml")
UNJOURNALLED = ("/__mock/", *SWAGGER_UI)


@dataclass(frozen=True)
class ActiveSession:
    """The session a request runs in: None names the default state."""

    name: str | None
    store: Store


_active: ContextVar[ActiveSession | None] = ContextVar("flashback_session", default=None)


def active_session() -> ActiveSession | None:
    """The session of the request being handled (None outside a request)."""
    return _active.get()


def without_session_prefix(path: str) -> str:
    """The path a request names once its ``/__session/{name}`` prefix, if any, is taken off."""
    if not path.startswith(PREFIX):
        return path
    return "/" + path[len(PREFIX) :].partition("/")[2]


def invalid_name_message(name: str) -> str:
    return (
        f"Invalid session name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        if name
        else "Missing session name after /__session/"
    )


def redact(body: Any) -> Any:
    """The body with every secret-like field replaced, at any depth."""
    if isinstance(body, dict):
        return {
            k: REDACTION if REDACTED.search(k) and v is not None else redact(v)
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [redact(item) for item in body]
    return body


def _journal_body(chunks: list[bytes], scope: Scope) -> Any:
    raw = b"".join(chunks)
    if not raw:
        return None
    content_type = next((v for h, v in scope["headers"] if h == b"content-type"), b"")
    if b"json" not in content_type:
        return None
    try:
        return redact(json.loads(raw))
    except (ValueError, RecursionError):
        # Not JSON, or nested beyond what the parser takes (the request was refused for it).
        return None


def _query(query_string: bytes) -> dict[str, str | list[str]]:
    query: dict[str, str | list[str]] = {}
    if not query_string:
        return query
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        previous = query.get(name)
        if previous is None:
            query[name] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            query[name] = [previous, value]
    return query


async def _refuse(status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
    await envelope_response(status, message)(scope, receive, send)


class SessionMiddleware:
    """Resolves the session of every request, and journals what the mock answered."""

    def __init__(
        self, app: ASGIApp, *, catalog: SessionCatalog, clock: Callable[[], datetime]
    ) -> None:
        self.app = app
        self.catalog = catalog
        self.clock = clock
        self.journal = catalog.policy.journal_size > 0
        # Where the entry is a database write, the response's start goes out with its first
        # body message, after the write: status line, headers and body leave back to back.
        # Headers sent ahead of a write of some 50 us cost the server about as much again per
        # request; ahead of an append in memory they cost nothing, and holding them back
        # about 10 us (bench/RESULTS.md).
        self.hold_start = catalog.records_in_a_database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        name: str | None = None
        if path.startswith(PREFIX):
            name, _, rest = path[len(PREFIX) :].partition("/")
            prefix = PREFIX + name
            raw_path = scope.get("raw_path")
            scope = dict(
                scope, path="/" + rest, raw_path=raw_path[len(prefix) :] if raw_path else None
            )
            if scope["path"] == "/" or scope["path"].startswith(SWAGGER_UI):
                # Swagger UI, the served contract and the index build their URLs (and "Try it
                # out" its server) from the root path. Not set for the APIs: their routing
                # would take it as part of their base path.
                root_path = scope.get("root_path", "") + prefix
                scope["root_path"] = scope["route_root_path"] = root_path
        else:
            for header, value in scope["headers"]:
                if header == b"x-mock-session":
                    name = value.decode("latin-1")
                    break
        if name is not None and not NAME.fullmatch(name):
            await _refuse(400, invalid_name_message(name), scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            # A preflight the CORS layer did not answer creates no session.
            await self.app(scope, receive, send)
            return
        try:
            if name is not None and self.catalog.may_wait:
                # A session's use updates its row, which another instance may hold locked.
                store = await asyncio.to_thread(self.catalog.use, name, self.clock())
            else:
                store = self.catalog.use(name, self.clock())
        except SessionLimitReached:
            limit = self.catalog.policy.max_sessions
            await _refuse(
                429,
                f"Too many sessions: this mock keeps at most {limit} at once (--max-sessions); "
                "delete one with DELETE /__mock/sessions/{name} or wait for an idle one "
                "to expire (--session-ttl)",
                scope,
                receive,
                send,
            )
            return
        # Shared with the copies connexion's layers make: where routing and security write.
        scope.setdefault("extensions", {})
        token = _active.set(ActiveSession(name, store))
        try:
            if not self.journal or scope["path"] == "/" or scope["path"].startswith(UNJOURNALLED):
                await self.app(scope, receive, send)
            else:
                await self._journalled(name, scope, receive, send)
        finally:
            _active.reset(token)

    async def _journalled(
        self, name: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        when = self.clock()
        chunks: list[bytes] = []
        size = 0
        status = 0

        async def receive_and_keep() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request" and size < MAX_JOURNAL_BODY:
                body = message.get("body", b"")
                chunks.append(body)
                size += len(body)
            return message

        start: Message | None = None
        hold_start = self.hold_start

        async def send_and_record(message: Message) -> None:
            nonlocal status, start
            if message["type"] == "http.response.start":
                status = message["status"]
                if hold_start:
                    start = message
                    return
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if last and hold_start:
                entry = self._entry(name, scope, when, started, status, chunks)
                if self.catalog.may_wait:
                    # A round trip to a shared server, which may be slow or hold the table
                    # locked: from a worker thread, the loop serves other requests meanwhile.
                    await asyncio.to_thread(self.catalog.record, entry)
                else:
                    self.catalog.record(entry)
            if start is not None:
                await send(start)
                start = None
            if last and not hold_start:
                # An append in memory, made once the answer is on its way (one client's wait
                # does not include it) and before this task gives the loop back: no other
                # request is read in between (bench/RESULTS.md).
                try:
                    await send(message)
                finally:
                    self.catalog.record(self._entry(name, scope, when, started, status, chunks))
            else:
                await send(message)

        await self.app(scope, receive_and_keep, send_and_record)

    @staticmethod
    def _entry(
        name: str | None,
        scope: Scope,
        when: datetime,
        started: float,
        status: int,
        chunks: list[bytes],
    ) -> dict[str, Any]:
        extensions = scope.get("extensions", {})
        operation = extensions.get("connexion_routing", {}).get("operation_id")
        user = extensions.get("connexion_context", {}).get("user")
        return {
            "time": format_iso(when),
            "session": name,
            "method": scope["method"],
            "path": scope["path"],
            "operationId": None if operation is None else operation.rsplit(".", 1)[-1],
            "query": _query(scope.get("query_string", b"")),
            "status": status,
            "durationMs": round((time.perf_counter() - started) * 1000, 3),
            "userId": user,
            "body": _journal_body(chunks, scope),
        }
