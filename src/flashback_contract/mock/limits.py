"""Bounds on what one request may cost: head and body sizes, and JSON bodies parsed defensively."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, UnsupportedMediaTypeProblem
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flashback_contract.web import envelope, json_text

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Far above anything the contract needs (ids are at most 128 characters), far below what
# would let one request pin a core in header handling.
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 64

BODY_TOO_LARGE = "Request body is larger than {limit} bytes"
URL_TOO_LONG = f"Request URL is longer than {MAX_URL_BYTES} bytes"
HEADERS_TOO_LARGE = (
    f"Request headers are larger than {MAX_HEADER_BYTES} bytes or more than {MAX_HEADERS}"
)
JSON_TOO_DEEP = "Request body is nested too deeply"
NUMBER_TOO_LONG = "Request body holds a number with too many digits"
NOT_UTF8 = "Request body is not valid UTF-8"
CONTENT_TYPE_REQUIRED = "Content-Type is required with a request body: application/json"


class RequestLimits:
    """Refuse oversized requests before anything parses them: 414, 431 and 413.

    A body is read here (up to the limit) and replayed, so its streamed size is bounded
    whether or not it announced a Content-Length. ``large_bodies`` maps ``(method, path)`` to
    a larger limit for the operations whose bodies are whole documents (a seed import).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        large_bodies: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.large_bodies = dict(large_bodies or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string", b"")) > MAX_URL_BYTES:
            await _refuse(send, 414, URL_TOO_LONG)
            return
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS:
            await _refuse(send, 431, HEADERS_TOO_LARGE)
            return
        size = 0
        announced: int | None = None
        streamed = False
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"content-length":
                announced = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                streamed = True
        if size > MAX_HEADER_BYTES:
            await _refuse(send, 431, HEADERS_TOO_LARGE)
            return
        if not announced and not streamed:
            await self.app(scope, receive, send)
            return
        limit = self.large_bodies.get((scope["method"], scope["path"]), self.max_body_bytes)
        if announced is not None and announced > limit:
            await _refuse(send, 413, BODY_TOO_LARGE.format(limit=limit))
            return
        messages = await self._read_body(receive, limit)
        if messages is None:
            await _refuse(send, 413, BODY_TOO_LARGE.format(limit=limit))
            return
        await self.app(scope, _replay(messages, receive), send)

    async def _read_body(self, receive: Receive, limit: int) -> list[Message] | None:
        """The body's messages, or None once they exceed ``limit``."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > limit:
                return None
            if not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = iter(messages)

    async def replay() -> Message:
        return next(pending, None) or await receive()

    return replay


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json_text(envelope(message)).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _refuse_constant(name: str) -> Any:
    raise BadRequestProblem(detail=f"{name} is not valid JSON")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        names = [name for name, _ in pairs]
        duplicate = next(name for i, name in enumerate(names) if name in names[:i])
        raise BadRequestProblem(detail=f"Duplicate key {duplicate!r} in the JSON body")
    return result


class StrictJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """connexion's JSON body validation, refusing what it would let through or crash on.

    Refused with a 4xx: a body without Content-Type (415); duplicate object keys, NaN and
    Infinity, nesting beyond the parser's recursion limit, numbers beyond Python's digit
    limit and text that is not UTF-8 (400).
    """

    async def _parse(self, stream: Any, scope: Scope) -> Any:
        raw = b"".join([message async for message in stream])
        if raw and not any(name == b"content-type" for name, _ in scope["headers"]):
            raise UnsupportedMediaTypeProblem(detail=CONTENT_TYPE_REQUIRED)
        try:
            text = raw.decode(self._encoding)
        except UnicodeDecodeError as exc:
            raise BadRequestProblem(detail=NOT_UTF8) from exc
        except LookupError as exc:
            raise UnsupportedMediaTypeProblem(detail=f"Unknown charset {self._encoding!r}") from exc
        if not text:
            return None
        try:
            return json.loads(
                text, object_pairs_hook=_refuse_duplicate_keys, parse_constant=_refuse_constant
            )
        except RecursionError as exc:
            raise BadRequestProblem(detail=JSON_TOO_DEEP) from exc
        except json.JSONDecodeError as exc:
            raise BadRequestProblem(detail=str(exc)) from exc
        except ValueError as exc:
            # An integer longer than Python converts (sys.get_int_max_str_digits).
            raise BadRequestProblem(detail=NUMBER_TOO_LONG) from exc


def validator_map() -> dict[str, Any]:
    """connexion's validators with the strict JSON body validator in place of its own."""
    return {"body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": StrictJSONBodyValidator})}
