"""Bridge nodes: registerNode and unregisterNode, authenticated by signature, not Bearer token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flashback_contract import signing
from flashback_contract.domain import EventContext, EventType, Node, OrganizationKey, Provider
from flashback_contract.mock.errors import ApiError
from flashback_contract.mock.services import Services, current_services
from flashback_contract.store import UnitOfWork

INVALID_SIGNATURE = "Signature verification failed"


def _check_timestamp(body: dict[str, Any], services: Services) -> None:
    try:
        moment = signing.signed_moment(body["timestamp"])
    except signing.MalformedTimestamp as exc:
        raise ApiError(400, str(exc), "INVALID_TIMESTAMP") from exc
    window = timedelta(seconds=services.settings.node_clock_skew_seconds)
    if abs(services.clock() - moment) > window:
        raise ApiError(
            400,
            f"timestamp is more than {int(window.total_seconds())} seconds from the server clock",
            "STALE_TIMESTAMP",
        )


def _signature_digest(body: dict[str, Any]) -> str:
    try:
        return signing.signature_digest(str(body["signature"]))
    except signing.MalformedSignature as exc:
        raise ApiError(400, str(exc), "MALFORMED_SIGNATURE") from exc


def _signing_key(uow: UnitOfWork, body: dict[str, Any]) -> OrganizationKey:
    """The stored organization key whose private half signed the body."""
    org_id = body.get("id_org")
    if org_id is not None and uow.organization(org_id) is None:
        raise ApiError(400, f"unknown organization {org_id}", "UNKNOWN_ORGANIZATION")
    candidates = uow.verification_keys(org_id)
    if not candidates:
        raise ApiError(400, "no organization key to verify the signature", "NO_ORGANIZATION_KEY")
    for key in candidates:
        if signing.verifies(body, key.public_key):
            return key
    raise ApiError(400, INVALID_SIGNATURE, "INVALID_SIGNATURE")


def _accept(uow: UnitOfWork, body: dict[str, Any], services: Services) -> OrganizationKey:
    """Verify freshness, signature and novelty; the signature is spent once this returns."""
    _check_timestamp(body, services)
    digest = _signature_digest(body)
    key = _signing_key(uow, body)
    now = services.clock()
    if not uow.remember_signature(digest, now):
        raise ApiError(400, "signature was already used", "REPLAYED_SIGNATURE")
    # A signature accepted at A carries a timestamp within the window of A, so it is stale,
    # and refused as such, from A + 2 windows on: its record is no longer needed then.
    uow.forget_signatures(now - 2 * timedelta(seconds=services.settings.node_clock_skew_seconds))
    # Key deletions take this lock too: the signing key stays while its node key is written.
    uow.lock_organization(key.org_id)
    return key


def registerNode(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    services = current_services()
    with services.store.transaction() as uow:
        key = _accept(uow, body, services)
        node = Node(
            ip=body["ip"],
            org_id=key.org_id,
            key_id=key.id,
            provider=Provider(body["provider"]),
            region=body["region"],
            version=body["version"],
            status=body["status"],
            services=body.get("nodeServices"),
            updated_at=services.clock(),
        )
        new = uow.save_node(node)
        services.record_event(
            uow,
            None,
            EventContext.flashbacknode,
            EventType.created if new else EventType.updated,
            node.ip,
            details={"keyId": key.id, "provider": node.provider.value, "region": node.region},
            org_id=key.org_id,
        )
    return {"success": True, "message": "Node registered successfully"}, 200


def unregisterNode(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    services = current_services()
    with services.store.transaction() as uow:
        key = _accept(uow, body, services)
        node = uow.node(body["ip"])
        # A node is unregistered by a key of its own organization only.
        # The delete decides, not the read: of racing unregistrations one removes the node.
        if node is None or not uow.delete_node(node.ip, key.org_id):
            raise ApiError(404, f"node {body['ip']} is not registered", "NODE_NOT_FOUND")
        services.record_event(
            uow,
            None,
            EventContext.flashbacknode,
            EventType.deleted,
            node.ip,
            details={"keyId": key.id},
            org_id=key.org_id,
        )
    return {"success": True, "message": "Node unregistered successfully"}, 200
