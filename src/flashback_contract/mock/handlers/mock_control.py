"""The mock control API (mock-control.yaml): resetState, exportState, importState."""

from __future__ import annotations

import ipaddress
from typing import Any

import flask

from flashback_contract.mock.auth import CONTROL_SUBJECT
from flashback_contract.mock.errors import ApiError
from flashback_contract.mock.seed import SeedError, dump_seed, read_seed, replace_state
from flashback_contract.mock.services import Services, current_services

LOOPBACK_ONLY = (
    "The mock control API answers loopback clients only; "
    "start the server with --control-token to open it to others"
)


def _client_is_loopback() -> bool:
    try:
        return ipaddress.ip_address(flask.request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _authorized(token_info: dict[str, Any] | None) -> Services:
    """With a control token, its bearer only; without one, loopback clients only."""
    services = current_services()
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
    return {"success": True, "message": "State reset to the seed"}, 200


def exportState(token_info: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    with services.store.transaction() as uow:
        return dump_seed(uow.everything()), 200


def importState(
    body: dict[str, Any], token_info: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    services = _authorized(token_info)
    try:
        with services.store.transaction() as uow:
            replace_state(uow, body)
    except SeedError as exc:
        raise ApiError(400, f"State not imported, nothing changed: {exc}") from exc
    return {"success": True, "message": "State imported"}, 200
