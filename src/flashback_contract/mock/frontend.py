"""What a frontend team needs beyond the contract: CORS, Prism-style ``Prefer``, latency, faults."""

from __future__ import annotations

import asyncio
import random
from typing import Any
from urllib.parse import parse_qsl

from connexion import FlaskApp
from connexion.exceptions import BadRequestProblem
from connexion.middleware import MiddlewarePosition
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from flashback_contract.contract import HTTP_METHODS, load_spec
from flashback_contract.mock.sessions import (
    SESSION_HEADER,
    active_session,
    without_session_prefix,
)
from flashback_contract.mock.settings import Settings
from flashback_contract.store import SessionCatalog
from flashback_contract.web import EnvelopeCORSMiddleware, cors_options, json_text

MAX_DELAY_MS = 10_000
# Where the mock control API is mounted (outside the contract).
CONTROL_BASE_PATH = "/__mock"
# Prism's Prefer preferences this mock honours.
PREFERENCES = ("code", "example", "delay")


# Request headers the mock itself reads (Prefer) or that tracing front ends commonly send.
MOCK_REQUEST_HEADERS = ("Prefer", "X-Request-Id", SESSION_HEADER)
# Response headers the mock adds beside the contract's own.
MOCK_RESPONSE_HEADERS = ("Content-Disposition", "Preference-Applied", "X-Request-Id")


def parse_prefer(value: str) -> dict[str, str]:
    """``Prefer: code=403, example=quota; delay=200`` as a mapping (RFC 7240 separators)."""
    preferences = {}
    for token in value.replace(";", ",").split(","):
        name, _, argument = token.strip().partition("=")
        if name.strip().lower() in PREFERENCES and argument:
            preferences[name.strip().lower()] = argument.strip().strip('"')
    return preferences


def resolved_responses(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An operation's documented responses by status, ``$ref``s resolved."""
    spec = load_spec()
    resolved = {}
    for status, response in operation["responses"].items():
        if "$ref" in response:
            response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        resolved[str(status)] = response
    return resolved


def _named_examples(response: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {
        name: (media_type, example["value"])
        for media_type, content in response.get("content", {}).items()
        for name, example in content.get("examples", {}).items()
    }


def documented_response(
    operation: dict[str, Any], code: str | None, example: str | None, accept: str
) -> tuple[int, str, Any]:
    """(status, media type, body) of a documented example; BadRequestProblem if there is none."""
    responses = resolved_responses(operation)
    name = operation["operationId"]
    if code is not None and code not in responses:
        raise BadRequestProblem(
            detail=f"Prefer: code={code} is not documented for {name}; "
            f"documented codes: {', '.join(sorted(responses))}"
        )
    candidates = [code] if code is not None else sorted(responses)
    if example is not None:
        for status in candidates:
            named = _named_examples(responses[status])
            if example in named:
                media_type, body = named[example]
                return int(status), media_type, body
        known = sorted({n for s in candidates for n in _named_examples(responses[s])})
        raise BadRequestProblem(
            detail=f"Prefer: example={example} is not documented for {name}"
            + (f" (code {code})" if code else "")
            + f"; documented examples: {', '.join(known) or 'none'}"
        )
    assert code is not None
    content = responses[code].get("content", {})
    # JSON first, as the handlers negotiate: `*/*` and no Accept get JSON.
    offered = sorted(content, key=lambda media_type: media_type != "application/json")
    wanted = parse_accept_header(accept, MIMEAccept).best_match(offered) if accept else None
    for media_type in [wanted, *offered]:
        if media_type is None:
            continue
        if "example" in content[media_type]:
            return int(code), media_type, content[media_type]["example"]
        for value in content[media_type].get("examples", {}).values():
            return int(code), media_type, value["value"]
    raise BadRequestProblem(detail=f"{name} documents no example for code {code}")


def _prefer_and_accept(headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    """The first ``Prefer`` and ``Accept`` header values ("" when absent), in one pass."""
    prefer = accept = None
    for name, value in headers:
        if name == b"prefer" and prefer is None:
            prefer = value.decode("latin-1")
        elif name == b"accept" and accept is None:
            accept = value.decode("latin-1")
    return prefer or "", accept or ""


class PreferMiddleware:
    """Prism's ``Prefer`` header, ``--delay-ms`` and ``--fail-rate`` for the contract's operations.

    Installed twice: before security, where only ``Prefer: code=401`` is answered (a forced
    401 needs no credentials), and after it, where everything else is.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        before_security: bool,
        sessions: SessionCatalog | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.before_security = before_security
        self.sessions = sessions
        # connexion's routing names an operation by the function it resolved to.
        self.operations = {
            f"{op['x-openapi-router-controller']}.{op['operationId']}": op
            for item in load_spec()["paths"].values()
            for method, op in item.items()
            if method in HTTP_METHODS
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        operation = self.operations.get(routing.get("operation_id", ""))
        if scope["type"] != "http" or operation is None:
            await self.app(scope, receive, send)
            return
        prefer, accept = _prefer_and_accept(scope["headers"])
        preferences = parse_prefer(prefer) if prefer else {}
        forced = preferences.get("code")
        if self.before_security:
            if forced == "401":
                chosen = documented_response(operation, forced, None, accept)
                await self._respond(chosen, ["code"], preferences, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        override = await self._override(scope, operation["operationId"])
        if override is not None:
            scope.setdefault("state", {})["forced"] = f"override {override['id']}"
            await asyncio.sleep(override["delayMs"] / 1000)
            chosen = (override["status"], override["mediaType"], override["body"])
            await self._respond(chosen, [], preferences, scope, receive, send)
            return
        delay_ms = self._delay_ms(preferences)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        delayed = ["delay"] if "delay" in preferences else []
        if self.settings.fail_rate and random.random() < self.settings.fail_rate:
            chosen = documented_response(operation, "500", None, accept)
            scope.setdefault("state", {})["forced"] = "fail-rate"
            await self._respond(chosen, delayed, preferences, scope, receive, send)
        elif forced is not None or "example" in preferences:
            chosen = documented_response(operation, forced, preferences.get("example"), accept)
            applied = [name for name in ("code", "example") if name in preferences] + delayed
            await self._respond(chosen, applied, preferences, scope, receive, send)
        elif delayed:
            await self.app(scope, receive, _applying(delayed, preferences, send))
        else:
            await self.app(scope, receive, send)

    async def _override(self, scope: Scope, operation_id: str) -> dict[str, Any] | None:
        """The session's override for this request, spent by one, if any."""
        if self.sessions is None:
            return None
        active = active_session()
        name = None if active is None else active.name
        if not self.sessions.overridden(name, operation_id):
            return None
        params = {k: v for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"))}
        params.update({k: str(v) for k, v in scope.get("path_params", {}).items()})
        if self.sessions.may_wait:
            # Spending one locks its row, which another instance may hold.
            return await asyncio.to_thread(self.sessions.take_override, name, operation_id, params)
        return self.sessions.take_override(name, operation_id, params)

    def _delay_ms(self, preferences: dict[str, str]) -> int:
        if "delay" not in preferences:
            return self.settings.delay_ms
        try:
            delay = int(preferences["delay"])
        except ValueError:
            delay = -1
        if not 0 <= delay <= MAX_DELAY_MS:
            raise BadRequestProblem(
                detail=f"Prefer: delay must be a whole number of milliseconds, 0 to {MAX_DELAY_MS}"
            )
        return delay

    @staticmethod
    async def _respond(
        chosen: tuple[int, str, Any],
        applied: list[str],
        preferences: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        status, media_type, body = chosen
        if applied and applied != ["delay"]:
            # The access log marks answers the server made up rather than computed (one token:
            # the text log line is space-separated).
            scope.setdefault("state", {})["forced"] = "prefer:" + ",".join(
                f"{name}={preferences[name]}" for name in applied if name != "delay"
            )
        text = json_text(body) if media_type == "application/json" else str(body)
        response = Response(text, status_code=status, media_type=media_type)
        if applied:
            response.headers["Preference-Applied"] = _preference_applied(applied, preferences)
        await response(scope, receive, send)


def _preference_applied(applied: list[str], preferences: dict[str, str]) -> str:
    """The ``Preference-Applied`` value (RFC 7240) for the honoured preferences."""
    return ", ".join(f"{name}={preferences[name]}" for name in applied)


def _applying(applied: list[str], preferences: dict[str, str], send: Send) -> Send:
    """``send`` with ``Preference-Applied`` added to the response's headers."""
    value = _preference_applied(applied, preferences).encode("latin-1")

    async def send_with_header(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], (b"preference-applied", value)]}
        await send(message)

    return send_with_header


class SplitCORSMiddleware:
    """CORS for the contract as configured; for the control API, explicit origins only.

    The control API exports the demo tokens and resets the state: no web page may read or
    call it unless the server was started with ``--cors-origin`` naming that page's origin.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        allow_headers = (*MOCK_REQUEST_HEADERS, *settings.cors_headers)
        self.contract = EnvelopeCORSMiddleware(
            app,
            **cors_options(
                settings.cors_origins,
                allow_headers=allow_headers,
                expose_headers=MOCK_RESPONSE_HEADERS,
            ),
        )
        explicit = control_cors_origins(settings)
        self.control: ASGIApp = (
            EnvelopeCORSMiddleware(app, **cors_options(explicit, allow_headers=allow_headers))
            if explicit
            else app
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A session's control API (/__session/w1/__mock/...) is the control API too.
        path = without_session_prefix(scope["path"]) if scope["type"] == "http" else ""
        if path.startswith(CONTROL_BASE_PATH + "/"):
            await self.control(scope, receive, send)
        else:
            await self.contract(scope, receive, send)


def control_cors_origins(settings: Settings) -> list[str]:
    """Origins given with --cors-origin (never the default wildcard): the control API's CORS."""
    return [o for o in settings.cors_origins if o != "*"] if settings.cors else []


def install(app: FlaskApp, settings: Settings, sessions: SessionCatalog) -> None:
    """Add CORS (unless disabled), overrides and the Prefer/latency/fault middleware."""
    if settings.cors:
        app.add_middleware(
            SplitCORSMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, settings=settings
        )
    app.add_middleware(
        PreferMiddleware,
        position=MiddlewarePosition.BEFORE_SECURITY,
        settings=settings,
        before_security=True,
    )
    app.add_middleware(
        PreferMiddleware,
        position=MiddlewarePosition.BEFORE_VALIDATION,
        settings=settings,
        before_security=False,
        sessions=sessions,
    )
