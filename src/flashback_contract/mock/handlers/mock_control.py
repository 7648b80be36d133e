"""The mock control API (mock-control.yaml): state, sessions, request journal, tokens, overrides.

Each acts on the request's session (``/__session/{name}/`` or ``X-Mock-Session``), the default
state otherwise.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import flask

from flashback_contract.domain import iso
from flashback_contract.mock import overrides, tokens
from flashback_contract.mock.auth import CONTROL_SUBJECT
from flashback_contract.mock.errors import ApiError
from flashback_contract.mock.frontend import control_cors_origins
from flashback_contract.mock.seed import (
    SeedError,
    dump_seed,
    parse_seed,
    read_seed,
    replace_state,
    validate_seed,
)
from flashback_contract.mock.services import Services, current_services
from flashback_contract.store.sessions import JournalQuery

LOOPBACK_ONLY = (
    "The mock control API answers loopback clients only; "
    "start the server with --control-token to open it to others"
)


def _client_is_loopback() -> bool:
    try:
        return ipaddress.ip_address(flask.request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _refuse_cross_site(services: Services) -> None:
    """Refuse browser requests from other sites, which a simple POST makes without preflight."""
    origin = flask.request.headers.get("Origin")
    site = flask.request.headers.get("Sec-Fetch-Site")
    own = flask.request.host_url.rstrip("/")
    if origin is not None:
        allowed = origin == own or origin in control_cors_origins(services.settings)
    else:
        # Browsers omit Origin on some cross-site GETs but always say where a request came from.
        allowed = site in (None, "same-origin", "none")
    if not allowed:
        raise ApiError(
            403,
            f"The mock control API refuses cross-site browser requests (from {origin or site}); "
            "start the server with --cors-origin ORIGIN to allow a web app's origin",
        )


def _authorized(token_info: dict[str, Any] | None) -> Services:
    """Same-site callers only; with a control token, its bearer only; else loopback only."""
    services = current_services()
    _refuse_cross_site(services)
    if services.settings.control_token:
        # The security alternative `{}` lets a request without (or with a wrong) token reach
        # here with empty token info; only the control token's check names this subject.
        if not token_info or token_info.get("sub") != CONTROL_SUBJECT:
            raise ApiError(401, "This mock requires its control token (Authorization: Bearer)")
    elif not _client_is_loopback():
        raise ApiError(403, LOOPBACK_ONLY)
    return services


def resetState(token_info: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    seed = read_seed(services.settings.seed_file)
    with services.store.transaction() as uow:
        replace_state(uow, seed)
    services.sessions.clear_overrides(services.session)
    return {"success": True, "message": "State reset to the seed"}, 200


def exportState(token_info: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    with services.store.reading() as uow:
        return dump_seed(uow.everything()), 200


def importState(
    body: dict[str, Any] | bytes, token_info: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    try:
        # JSON arrives parsed; YAML as its bytes.
        document = parse_seed(body) if isinstance(body, bytes) else validate_seed(body)
        with services.store.transaction() as uow:
            replace_state(uow, document)
    except SeedError as exc:
        raise ApiError(400, f"State not imported, nothing changed: {exc}") from exc
    return {"success": True, "message": "State imported"}, 200


def listSessions(token_info: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    return {
        "sessions": [
            {
                "name": info.name,
                "createdAt": iso(info.created_at),
                "lastUsedAt": iso(info.last_used_at),
                "requestCount": info.request_count,
            }
            for info in services.sessions.sessions(services.clock())
        ]
    }, 200


def deleteSession(
    name: str, token_info: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    if not services.sessions.drop(name):
        raise ApiError(404, f"No session {name!r}")
    return {"success": True, "message": f"Session {name} deleted"}, 200


def _journal_scope(services: Services, session: str | None) -> tuple[str | None, bool]:
    """(session, every session?): the request's session, else the named one, else all."""
    if services.session is not None:
        return services.session, False
    if session is not None:
        return session, False
    return None, True


def listRequests(
    session: str | None = None,
    operationId: str | None = None,
    method: str | None = None,
    status: int | None = None,
    limit: int = 100,
    token_info: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    name, every = _journal_scope(services, session)
    query = JournalQuery(
        session=name,
        all_sessions=every,
        operation_id=operationId,
        method=method,
        status=status,
        limit=limit,
    )
    return {"requests": services.sessions.requests(query)}, 200


def clearRequests(
    session: str | None = None, token_info: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    services.sessions.clear_requests(*_journal_scope(services, session))
    return {"success": True, "message": "Request journal cleared"}, 200


def issueToken(
    body: dict[str, Any], token_info: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    user_id = body["user"]
    with services.store.transaction() as uow:
        if uow.user(user_id) is None:
            raise ApiError(404, f"No user {user_id!r} in this mock's state")
    now = services.clock()
    ttl = timedelta(seconds=body.get("ttl", 3600))
    token = tokens.issue(services.jwt_secret, user_id, ttl, now)
    return {"token": token, "expiresAt": iso(now + ttl)}, 200


def listOverrides(token_info: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    return {"overrides": services.sessions.overrides(services.session)}, 200


def addOverride(
    body: dict[str, Any], token_info: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    return services.sessions.add_override(services.session, overrides.prepare(body)), 201


def clearOverrides(token_info: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    services.sessions.clear_overrides(services.session)
    return {"success": True, "message": "Overrides cleared"}, 200
