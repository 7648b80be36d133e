"""Organization keys: operations deleteOrgKeys, generateOrgKey, getOrgKeys, deleteOrgKey."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import flask

from flashback_contract.domain import EventContext, EventType, OrganizationKey, iso
from flashback_contract.mock import policy
from flashback_contract.mock.auth import principal_of
from flashback_contract.mock.crypto import generate_rsa_key_pair
from flashback_contract.mock.errors import ApiError
from flashback_contract.mock.services import current_services
from flashback_contract.store import UnitOfWork
from flashback_contract.web import json_text

PEM_MEDIA_TYPE = "application/x-pem-file"
JSON_MEDIA_TYPE = "application/json"


def _organization_key(key: OrganizationKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "orgId": key.org_id,
        "publicKey": key.public_key,
        "createdAt": iso(key.created_at),
        "nodeKeys": [{"keyId": nk.key_id, "nodeId": nk.node_id} for nk in key.node_keys],
    }


def deleteOrgKeys(idOrg: str, token_info: dict[str, Any]) -> tuple[dict[str, Any], int]:
    principal = principal_of(token_info)
    policy.require_org_key_manager(principal, idOrg)
    services = current_services()
    with services.store.transaction() as uow:
        # Serialised with generations and other deletes: each key is counted by one delete.
        uow.lock_organization(idOrg)
        count = uow.delete_org_keys(idOrg)
        services.record_event(
            uow,
            principal,
            EventContext.orgkey,
            EventType.deleted,
            context_id=idOrg,
            details={"action": "deleteAll", "deletedCount": count},
        )
    return {"success": True, "message": f"Successfully deleted {count} organization key(s)"}, 200


def generateOrgKey(idOrg: str, token_info: dict[str, Any]) -> flask.Response:
    principal = principal_of(token_info)
    policy.require_org_key_manager(principal, idOrg)
    services = current_services()
    maximum = services.settings.orgkeys_max
    with services.store.reading() as uow:
        if uow.count_org_keys(idOrg) >= maximum:
            raise ApiError(400, policy.orgkeys_quota_reached(maximum))
    # Outside the transaction: generation takes tens of milliseconds, and no other request
    # should wait on the store for it. The quota is checked again under the lock.
    private_pem, public_pem = generate_rsa_key_pair()
    with services.store.transaction() as uow:
        uow.lock_organization(idOrg)
        if uow.count_org_keys(idOrg) >= maximum:
            raise ApiError(400, policy.orgkeys_quota_reached(maximum))
        key = OrganizationKey(
            id=str(uuid.uuid4()), org_id=idOrg, public_key=public_pem, created_at=services.clock()
        )
        uow.add_org_key(key)
        services.record_event(uow, principal, EventContext.orgkey, EventType.created, key.id)

    # The private key leaves the process here and nowhere else.
    headers = {"X-Organization-Key-Id": key.id, "Cache-Control": "no-store"}
    wanted = flask.request.accept_mimetypes.best_match([JSON_MEDIA_TYPE, PEM_MEDIA_TYPE])
    if wanted == PEM_MEDIA_TYPE:
        headers["Content-Disposition"] = f'attachment; filename="{key.id}.pem"'
        return flask.Response(private_pem, status=200, mimetype=PEM_MEDIA_TYPE, headers=headers)
    # JSON, */*, no Accept (the TypeScript client) or anything else: the PEM as a JSON string.
    return flask.Response(
        json_text(private_pem), status=200, mimetype=JSON_MEDIA_TYPE, headers=headers
    )


def getOrgKeys(idOrg: str, token_info: dict[str, Any]) -> tuple[dict[str, Any], int]:
    policy.require_org_key_manager(principal_of(token_info), idOrg)
    keys = current_services().read_kept(
        ("org_keys", idOrg), functools.partial(_org_keys, idOrg), len
    )
    return {"success": True, "data": [_organization_key(k) for k in keys]}, 200


def _org_keys(org_id: str, uow: UnitOfWork) -> tuple[OrganizationKey, ...]:
    return tuple(uow.org_keys(org_id))


def deleteOrgKey(idOrg: str, idKey: str, token_info: dict[str, Any]) -> tuple[dict[str, Any], int]:
    principal = principal_of(token_info)
    policy.require_org_key_manager(principal, idOrg)
    services = current_services()
    with services.store.transaction() as uow:
        uow.lock_organization(idOrg)
        if not uow.delete_org_key(idOrg, idKey):
            raise ApiError(404, policy.ORG_KEY_NOT_FOUND)
        services.record_event(uow, principal, EventContext.orgkey, EventType.deleted, idKey)
    return {"success": True, "message": "Organization key deleted successfully"}, 200
