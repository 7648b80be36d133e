"""``flashback-contract proxy``: real traffic to a backend, checked against the contract on its way.

Every request goes to the upstream as it came (hop-by-hop headers aside) and every answer comes
back as the upstream sent it, byte for byte; the proxy adds one header, ``X-Contract-Violations``,
when the exchange disagrees with the contract. With ``strict`` a violating request is refused
(400) and a violating response replaced (502), both in the project's envelope.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.datastructures import Headers as StarletteHeaders
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.datastructures import Headers

from flashback_contract.conformance.record import Recorder
from flashback_contract.conformance.redact import curl_line, redact_body, redact_query
from flashback_contract.conformance.report import Example, Report
from flashback_contract.conformance.validation import (
    NOT_CHECKED,
    ContractValidator,
    Exchange,
    Operation,
    Violation,
)
from flashback_contract.web import EnvelopeCORSMiddleware, cors_options, envelope

log = logging.getLogger("flashback_contract.proxy")

VIOLATIONS_HEADER = "X-Contract-Violations"
REPORT_PATH = "/__proxy/report"
# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Bounds: the header stays well under common 8 KiB header limits; bodies past the cap are
# streamed through unchecked rather than held in memory.
MAX_HEADER_BYTES = 2048
MAX_CHECKED_BODY = 4 * 1024 * 1024
MAX_REQUEST_BODY = 16 * 1024 * 1024
STRICT = "refused (--strict)"
# How uvicorn serves the proxy: no Server or Date header of its own (answers go back as the
# upstream sent them) and no access log (it would print query strings unredacted).
SERVER_OPTIONS: dict[str, Any] = {"access_log": False, "server_header": False, "date_header": False}


@dataclass(frozen=True)
class ProxyOptions:
    upstream: str
    strict: bool = False
    timeout: float = 30.0
    cors: bool = True
    cors_origins: tuple[str, ...] = ("*",)
    # Request headers preflights allow beyond the contract's own.
    cors_headers: tuple[str, ...] = ()


def violations_header(violations: list[Violation]) -> str:
    """A compact JSON array of short strings, one per distinct violation, bounded in size."""
    shown: list[str] = []
    seen: set[tuple[str, str, int | None, str]] = set()
    for violation in violations:
        key = (violation.side, violation.kind, violation.status, violation.group)
        if key not in seen:
            seen.add(key)
            shown.append(violation.short())
    value = json.dumps(shown, separators=(",", ":"))
    while len(value) > MAX_HEADER_BYTES and shown:
        shown.pop()
        more = len(seen) - len(shown)
        value = json.dumps([*shown, f"... {more} more"], separators=(",", ":"))
    return value


def end_to_end(
    headers: list[tuple[bytes, bytes]], also_drop: tuple[bytes, ...] = ()
) -> list[tuple[bytes, bytes]]:
    """Headers without the hop-by-hop ones, including those ``Connection`` names."""
    named = {
        token.strip().lower().encode()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    return [
        (name, value)
        for name, value in headers
        if name.lower().decode("latin-1") not in HOP_BY_HOP
        and name.lower() not in named
        and name.lower() not in also_drop
    ]


def _media_type(headers: Headers) -> str:
    return (headers.get("content-type") or "").split(";", 1)[0].strip().lower()


def _decoded(body: bytes, headers: Headers) -> bytes | None:
    """The body as the application sees it; None for an encoding this proxy cannot read."""
    encoding = (headers.get("content-encoding") or "identity").strip().lower()
    if encoding == "identity":
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(body)
    except zlib.error:
        return None
    return None


def _json_body(body: bytes | None, media_type: str) -> Any:
    if body is None or "json" not in media_type:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class ContractProxy:
    """The ASGI app: forward, validate, report, record."""

    def __init__(
        self,
        options: ProxyOptions,
        validator: ContractValidator,
        report: Report,
        recorder: Recorder | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = options
        self.validator = validator
        self.report = report
        self.recorder = recorder
        self.upstream = options.upstream.rstrip("/")
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=self.options.timeout,
                follow_redirects=False,
                trust_env=False,
            )
            # httpx adds Accept, Accept-Encoding, Connection and User-Agent unless told not
            # to: forwarded requests carry the client's headers only.
            for name in list(self._client.headers):
                del self._client.headers[name]
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == REPORT_PATH and scope["method"] in ("GET", "HEAD"):
            await self._send_report(scope, send)
            return
        body, too_large = await self._read_body(receive)
        if too_large:
            await self._send_envelope(send, 413, "Request body too large for the proxy")
            return
        exchange = Exchange(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]],
            body=body,
        )
        operation, violations = self._check_request(exchange)
        example_request = self._curl(exchange)
        if self.options.strict and violations:
            message = "Request violates the contract: " + "; ".join(
                v.short() for v in violations[:10]
            )
            refused = Example(example_request, None, "not forwarded (--strict)")
            self.report.observe(operation, refused, None, violations, unanswered=STRICT)
            await self._send_envelope(send, 400, message, violations)
            return
        await self._forward(scope, exchange, operation, violations, example_request, send)

    # A validator that fails on some input must not stop the traffic: the exchange goes through,
    # marked as not checked (which fails the run, as a violation would).

    def _check_request(self, exchange: Exchange) -> tuple[Operation | None, list[Violation]]:
        operation: Operation | None = None
        try:
            operation, violations = self.validator.operation(exchange)
            if operation is not None:
                violations += self.validator.request_violations(exchange, operation)
        except Exception as exc:
            log.error(
                "%s %s: request not checked (%s)",
                exchange.method,
                exchange.path,
                type(exc).__name__,
            )
            return operation, [Violation("request", NOT_CHECKED, "", type(exc).__name__)]
        return operation, violations

    def _check_response(
        self, exchange: Exchange, operation: Operation, status: int, headers: Headers, body: bytes
    ) -> list[Violation]:
        try:
            return self.validator.response_violations(exchange, operation, status, headers, body)
        except Exception as exc:
            log.error(
                "%s %s: response not checked (%s)",
                exchange.method,
                exchange.path,
                type(exc).__name__,
            )
            return [Violation("response", NOT_CHECKED, "", type(exc).__name__, status)]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _read_body(receive: Receive) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_REQUEST_BODY:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), False

    def _url(self, scope: Scope) -> str:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        return self.upstream + target

    def _curl(self, exchange: Exchange) -> str:
        query = redact_query(exchange.query)
        url = self.upstream + exchange.path + (f"?{query}" if query else "")
        return curl_line(exchange.method, url, exchange.headers, exchange.body)

    async def _forward(
        self,
        scope: Scope,
        exchange: Exchange,
        operation: Operation | None,
        violations: list[Violation],
        example_request: str,
        send: Send,
    ) -> None:
        started = time.monotonic()
        request = self._http().build_request(
            exchange.method,
            self._url(scope),
            # The upstream's host and the body's length are the transport's to set.
            headers=end_to_end(scope["headers"], also_drop=(b"host", b"content-length")),
            content=exchange.body,
        )
        try:
            upstream = await self._http().send(request, stream=True)
        except httpx.TimeoutException:
            failure = f"timed out after {self.options.timeout:g} s"
            await self._upstream_failed(send, 504, failure, exchange, operation, example_request)
            return
        except httpx.HTTPError as exc:
            failure = f"unreachable ({type(exc).__name__})"
            await self._upstream_failed(send, 502, failure, exchange, operation, example_request)
            return
        try:
            await self._relay(
                upstream, exchange, operation, violations, example_request, send, started
            )
        finally:
            await upstream.aclose()

    async def _relay(
        self,
        upstream: httpx.Response,
        exchange: Exchange,
        operation: Operation | None,
        violations: list[Violation],
        example_request: str,
        send: Send,
        started: float,
    ) -> None:
        headers = Headers(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in upstream.headers.raw]
        )
        raw_headers = end_to_end(upstream.headers.raw)
        chunks: list[bytes] = []
        size = 0
        stream = upstream.aiter_raw()
        overflow = False
        try:
            async for chunk in stream:
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_CHECKED_BODY:
                    overflow = True
                    break
        except httpx.HTTPError as exc:
            failure = f"broke off ({type(exc).__name__})"
            await self._upstream_failed(send, 502, failure, exchange, operation, example_request)
            return
        body = b"".join(chunks)
        status = upstream.status_code
        media_type = _media_type(headers)
        decoded = None if overflow else _decoded(body, headers)
        if operation is not None and decoded is not None:
            violations = violations + self._check_response(
                exchange, operation, status, headers, decoded
            )
        elif overflow:
            log.info(
                "%s %s: body over %d bytes, streamed unchecked",
                exchange.method,
                exchange.path,
                MAX_CHECKED_BODY,
            )
        parsed = _json_body(decoded, media_type)
        # Written down before the answer goes back: a client that reads the report right
        # after its call finds the call in it.
        elapsed = (time.monotonic() - started) * 1000
        self._log(exchange, operation, status, violations, elapsed)
        example = Example(example_request, status, redact_body(decoded or b""))
        self.report.observe(operation, example, status, violations, media_type, parsed)
        if self.recorder is not None and operation is not None and 200 <= status < 300:
            self.recorder.observe(operation, exchange, headers, decoded, parsed)
        response_violations = [v for v in violations if v.side == "response"]
        if self.options.strict and response_violations and not overflow:
            message = "Response violates the contract: " + "; ".join(
                v.short() for v in response_violations[:10]
            )
            await self._send_envelope(send, 502, message, violations)
            return
        if violations:
            raw_headers.append((VIOLATIONS_HEADER.encode(), violations_header(violations).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if overflow:
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _log(
        self,
        exchange: Exchange,
        operation: Operation | None,
        status: int,
        violations: list[Violation],
        elapsed_ms: float,
    ) -> None:
        query = redact_query(exchange.query)
        target = exchange.path + (f"?{query}" if query else "")
        name = operation.name if operation is not None else "outside the contract"
        log.info(
            "%s %s -> %d %s (%.0f ms, %d violation(s))",
            exchange.method,
            target,
            status,
            name,
            elapsed_ms,
            len(violations),
        )
        for violation in violations:
            log.warning("  %s: %s", name, violation.short())

    async def _upstream_failed(
        self,
        send: Send,
        status: int,
        failure: str,
        exchange: Exchange,
        operation: Operation | None,
        example_request: str,
    ) -> None:
        log.error("%s %s: upstream %s", exchange.method, exchange.path, failure)
        await self._send_envelope(send, status, f"Upstream {failure}")
        example = Example(example_request, None, f"not answered: upstream {failure}")
        self.report.observe(operation, example, None, [], unanswered=f"upstream {failure}")

    @staticmethod
    async def _send_envelope(
        send: Send, status: int, message: str, violations: list[Violation] | None = None
    ) -> None:
        body = json.dumps(envelope(message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if violations:
            headers.append((VIOLATIONS_HEADER.encode(), violations_header(violations).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_report(self, scope: Scope, send: Send) -> None:
        query = scope.get("query_string", b"").decode()
        if "format=md" in query:
            body, media_type = self.report.to_markdown().encode(), b"text/markdown; charset=utf-8"
        else:
            body, media_type = self.report.to_json().encode(), b"application/json"
        message: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        await send(message)
        await send(
            {"type": "http.response.body", "body": body if scope["method"] == "GET" else b""}
        )


class BrowserCORSMiddleware(EnvelopeCORSMiddleware):
    """``serve``'s CORS, applied to browser requests only (those with ``Origin``).

    Starlette adds ``Vary: Origin`` to every answer; here an answer to a request without
    ``Origin`` goes back exactly as the upstream sent it.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(n == b"origin" for n, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def send(self, message: Message, send: Send, request_headers: StarletteHeaders) -> None:
        async def one_vary(message: Message) -> None:
            # The upstream may vary on Origin already: name it once.
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                tokens = [t.strip() for v in headers.getlist("vary") for t in v.split(",")]
                if len(tokens) != len(set(tokens)):
                    headers["Vary"] = ", ".join(dict.fromkeys(tokens))
            await send(message)

        await super().send(message, one_vary, request_headers)


@dataclass
class Proxy:
    """The proxy as the CLI and the tests run it: the ASGI app and what it accumulates."""

    app: ASGIApp
    proxy: ContractProxy
    report: Report
    recorder: Recorder | None

    def finish(self, reports: list[Path], junit: Path | None, record: Path | None) -> int:
        """Write the reports and the recorded seed; the exit status (1 if any violation)."""
        for path in reports:
            self.report.write(path)
        if junit is not None:
            junit.write_text(self.report.to_junit(), "utf-8")
        if record is not None and self.recorder is not None:
            self.recorder.write(record)
        return 1 if self.report.violations else 0


def create_proxy(
    options: ProxyOptions,
    spec: Mapping[str, Any],
    record: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Proxy:
    """Build the proxy for one upstream and one contract."""
    validator = ContractValidator(spec)
    report = Report(validator, options.upstream)
    recorder = Recorder() if record else None
    proxy = ContractProxy(options, validator, report, recorder, transport)
    app: ASGIApp = proxy
    if options.cors:
        app = BrowserCORSMiddleware(
            proxy,
            **cors_options(
                options.cors_origins,
                spec,
                allow_headers=options.cors_headers,
                expose_headers=[VIOLATIONS_HEADER],
            ),
        )
    return Proxy(app, proxy, report, recorder)
