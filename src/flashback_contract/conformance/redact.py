"""What the proxy writes down of real traffic, with tokens, secrets and private keys taken out."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

FILTERED = "[Filtered]"
PEM_REDACTED = "[PEM redacted]"
# Headers whose values are credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
# Field, parameter and header names whose values are never written down.
SECRET_NAME = re.compile(r"secret|password|token|private|credential", re.IGNORECASE)
# A PEM block, or the start of one cut off by truncation.
PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL)
# Headers a reproduction does without (the transport sets them).
_NOT_REPRODUCED = frozenset({"host", "content-length", "connection", "accept-encoding"})
EXCERPT_CHARS = 1000


def is_secret_header(name: str) -> bool:
    return name.lower() in SECRET_HEADERS or bool(SECRET_NAME.search(name))


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, FILTERED if is_secret_header(n) else v) for n, v in headers]


def redact_text(text: str) -> str:
    return PEM.sub(PEM_REDACTED, text)


def redact_json(value: Any) -> Any:
    """A JSON value with secret-named fields filtered and PEM blocks redacted, at any depth."""
    if isinstance(value, dict):
        return {
            k: FILTERED if SECRET_NAME.search(str(k)) else redact_json(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_body(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    """A body as text fit for a log or a report: redacted, then cut to ``limit`` characters."""
    text = body.decode("utf-8", "replace")
    try:
        shown = json.dumps(redact_json(json.loads(text)), ensure_ascii=False)
    except ValueError:
        shown = redact_text(text)
    return shown if len(shown) <= limit else shown[:limit] + f"... ({len(shown)} characters)"


def redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, FILTERED if SECRET_NAME.search(k) else v) for k, v in pairs])


def curl_line(
    method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes, limit: int = 2000
) -> str:
    """A copy-pasteable reproduction; credentials show as ``[Filtered]``."""
    parts = ["curl", "-X", method.upper(), shlex.quote(url)]
    for name, value in redact_headers(headers):
        if name.lower() not in _NOT_REPRODUCED:
            parts += ["-H", shlex.quote(f"{name}: {value}")]
    if body:
        parts += ["--data-binary", shlex.quote(redact_body(body, limit))]
    return " ".join(parts)
