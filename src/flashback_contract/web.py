"""HTTP pieces every product that answers browsers shares: the error envelope and CORS."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from flashback_contract.contract import HTTP_METHODS, load_spec


def json_text(document: Any) -> str:
    """The one JSON style of every body served: compact, keys in built order, newline-ended."""
    return json.dumps(document, separators=(",", ":")) + "\n"


def envelope(message: str, error_code: str | None = None) -> dict[str, Any]:
    """The documented error body, ``{"success": false, "message": ...}``."""
    body: dict[str, Any] = {"success": False, "message": message}
    if error_code is not None:
        body.update(errorCode=error_code, errorMessage=message)
    return body


def envelope_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A Starlette response carrying the envelope."""
    return Response(
        json_text(envelope(message)),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


class EnvelopeCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with refused preflights answered in the documented envelope."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode("utf-8", "replace")
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers.pop("content-type", None)
        return envelope_response(
            response.status_code, f"{reason} (CORS preflight refused)", headers
        )


def contract_methods(spec: Mapping[str, Any] | None = None) -> list[str]:
    """Every method the contract uses, for preflight answers."""
    paths = (spec or load_spec())["paths"]
    return sorted({m.upper() for item in paths.values() for m in item if m in HTTP_METHODS})


def contract_request_headers(spec: Mapping[str, Any] | None = None) -> list[str]:
    """Request headers the contract uses: header parameters, Bearer auth, bodies, negotiation."""
    spec = spec or load_spec()
    headers = {"Accept"}
    for item in spec["paths"].values():
        operations = [op for method, op in item.items() if method in HTTP_METHODS]
        for operation in operations:
            if "requestBody" in operation:
                headers.add("Content-Type")
        for parameter in [*item.get("parameters", [])] + [
            p for op in operations for p in op.get("parameters", [])
        ]:
            if parameter.get("in") == "header":
                headers.add(parameter["name"])
    for scheme in spec.get("components", {}).get("securitySchemes", {}).values():
        if scheme.get("type") == "http" or scheme.get("type") == "oauth2":
            headers.add("Authorization")
        elif scheme.get("type") == "apiKey" and scheme.get("in") == "header":
            headers.add(scheme["name"])
    return sorted(headers)


def contract_response_headers(spec: Mapping[str, Any] | None = None) -> list[str]:
    """Response headers the contract documents (a browser app may read them)."""
    spec = spec or load_spec()
    return sorted(
        {
            name
            for item in spec["paths"].values()
            for method, op in item.items()
            if method in HTTP_METHODS
            for response in op.get("responses", {}).values()
            for name in response.get("headers", {})
        }
    )


def cors_options(
    origins: Iterable[str],
    spec: Mapping[str, Any] | None = None,
    allow_headers: Iterable[str] = (),
    expose_headers: Iterable[str] = (),
) -> dict[str, Any]:
    """Keyword arguments of :class:`EnvelopeCORSMiddleware`: the contract's methods and headers,
    plus the product's own (``allow_headers``, ``expose_headers``)."""
    return {
        "allow_origins": list(origins),
        "allow_methods": contract_methods(spec),
        "allow_headers": sorted({*contract_request_headers(spec), *allow_headers}),
        "expose_headers": sorted({*contract_response_headers(spec), *expose_headers}),
        "allow_credentials": False,
    }
