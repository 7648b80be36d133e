"""Organization keys: deleteOrgKeys (seed 000), generateOrgKey, getOrgKeys, deleteOrgKey."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from flashback_contract.domain import EventContext, EventType
from flashback_contract.store import Store
from tests.conftest import ADMIN, GLOBEX_OWNER, MEMBER, OWNER, bearer

FORBIDDEN = {
    "success": False,
    "message": "Access denied: you can only manage keys for your own organization",
}
ACME_KEYS = ["orgkey-acme-3", "orgkey-acme-2", "orgkey-acme-1"]


def key_ids(client: TestClient, org: str = "org-acme", token: str = OWNER) -> list[str]:
    response = client.get(f"/organization/{org}/key", headers=bearer(token))
    assert response.status_code == 200
    return [key["id"] for key in response.json()["data"]]


def node_keys(store: Store) -> set[tuple[str, str]]:
    with store.transaction() as uow:
        return {
            (nk.key_id, nk.node_id)
            for org in ("org-acme", "org-globex")
            for key in uow.org_keys(org)
            for nk in key.node_keys
        }


# -- DELETE /organization/{idOrg}/key (seed 000) ---------------------------------


@pytest.mark.parametrize("token", [OWNER, ADMIN])
def test_owner_and_administrator_delete_all_org_keys_with_the_documented_count(
    client: TestClient, token: str
) -> None:
    response = client.delete("/organization/org-acme/key", headers=bearer(token))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "success": True,
        "message": "Successfully deleted 3 organization key(s)",
    }
    assert key_ids(client) == []


def test_delete_all_org_keys_removes_every_node_key_relationship(
    client: TestClient, store: Store
) -> None:
    assert node_keys(store) == {
        ("orgkey-acme-1", "192.0.2.10"),
        ("orgkey-acme-1", "192.0.2.11"),
        ("orgkey-acme-2", "192.0.2.12"),
    }

    client.delete("/organization/org-acme/key", headers=bearer(OWNER))

    assert node_keys(store) == set()


def test_delete_all_org_keys_leaves_other_organizations_alone(client: TestClient) -> None:
    client.delete("/organization/org-acme/key", headers=bearer(OWNER))

    assert key_ids(client, "org-globex", GLOBEX_OWNER) == ["orgkey-globex-1"]


def test_delete_all_org_keys_of_an_org_without_keys_reports_zero(
    client: TestClient, store: Store
) -> None:
    client.delete("/organization/org-acme/key", headers=bearer(OWNER))

    response = client.delete("/organization/org-acme/key", headers=bearer(OWNER))

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Successfully deleted 0 organization key(s)",
    }
    with store.transaction() as uow:
        latest = uow.events()[0]
    assert json.loads(latest.json_data or "") == {"action": "deleteAll", "deletedCount": 0}


def test_delete_all_org_keys_logs_a_system_event_with_the_count(
    client: TestClient, store: Store
) -> None:
    client.delete("/organization/org-acme/key", headers=bearer(ADMIN))

    with store.transaction() as uow:
        [event] = uow.events()
    assert (event.context, event.event) == (EventContext.orgkey, EventType.deleted)
    assert (event.org_id, event.user_id, event.context_id) == (
        "org-acme",
        "user-acme-admin",
        "org-acme",
    )
    assert json.loads(event.json_data or "") == {"action": "deleteAll", "deletedCount": 3}


@pytest.mark.parametrize(
    ("token", "org"),
    [
        (MEMBER, "org-acme"),  # a USER of the organization
        (GLOBEX_OWNER, "org-acme"),  # the OWNER of another organization
        (OWNER, "org-globex"),  # an OWNER acting on another organization
        (OWNER, "org-unknown"),  # an organization that does not exist
    ],
)
def test_delete_all_org_keys_is_refused_outside_own_admin_rights_and_changes_nothing(
    client: TestClient, store: Store, token: str, org: str
) -> None:
    response = client.delete(f"/organization/{org}/key", headers=bearer(token))

    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert key_ids(client) == ACME_KEYS
    assert key_ids(client, "org-globex", GLOBEX_OWNER) == ["orgkey-globex-1"]
    with store.transaction() as uow:
        assert uow.events() == []


# -- POST /organization/{idOrg}/key -----------------------------------------------


def _public_pem_of(private_pem: str) -> str:
    private_key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert private_key.key_size == 2048
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_generate_returns_the_private_key_once_as_a_pem_file(
    client: TestClient, store: Store
) -> None:
    response = client.post(
        "/organization/org-acme/key",
        headers={**bearer(OWNER), "Accept": "application/x-pem-file"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-pem-file")
    private_pem = response.text
    assert private_pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert response.headers["cache-control"] == "no-store"
    new_id = response.headers["X-Organization-Key-Id"]
    assert key_ids(client)[0] == new_id
    with store.transaction() as uow:
        stored = uow.org_keys("org-acme")[0]
    assert stored.public_key == _public_pem_of(private_pem)


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_generate_answers_json_clients_with_the_pem_as_a_json_string(
    client: TestClient, accept: str | None
) -> None:
    headers = bearer(OWNER)
    if accept is not None:
        headers["Accept"] = accept

    response = client.post("/organization/org-acme/key", headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    private_pem = json.loads(response.text)
    assert isinstance(private_pem, str)
    assert private_pem.startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_generate_never_stores_the_private_key(client: TestClient, store: Store) -> None:
    response = client.post(
        "/organization/org-acme/key", headers={**bearer(OWNER), "Accept": "application/x-pem-file"}
    )
    body_lines = response.text.strip().splitlines()[1:-1]

    with store.transaction() as uow:
        everything = repr([uow.org_keys("org-acme"), uow.events()])
    assert "PRIVATE KEY" not in everything
    assert not any(line in everything for line in body_lines)


def test_generate_refuses_past_the_quota_with_the_documented_message(
    client: TestClient, store: Store
) -> None:
    for _ in range(2):  # the demo organization holds 3 of 5
        assert client.post("/organization/org-acme/key", headers=bearer(OWNER)).status_code == 200

    response = client.post("/organization/org-acme/key", headers=bearer(OWNER))

    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "Maximum number of organization keys (5) has been reached. "
        "Please delete existing keys before creating new ones.",
    }
    assert len(key_ids(client)) == 5


def test_generate_quota_follows_the_orgkeys_max_setting(make_app) -> None:  # type: ignore[no-untyped-def]
    with make_app(orgkeys_max=3).test_client() as client:
        response = client.post("/organization/org-acme/key", headers=bearer(OWNER))

    assert response.status_code == 400
    assert "(3)" in response.json()["message"]


def test_generate_logs_a_created_event_for_the_new_key(client: TestClient, store: Store) -> None:
    response = client.post("/organization/org-acme/key", headers=bearer(ADMIN))

    with store.transaction() as uow:
        [event] = uow.events()
    assert (event.context, event.event, event.context_id) == (
        EventContext.orgkey,
        EventType.created,
        response.headers["X-Organization-Key-Id"],
    )


@pytest.mark.parametrize(("token", "org"), [(MEMBER, "org-acme"), (OWNER, "org-globex")])
def test_generate_is_refused_outside_own_admin_rights(
    client: TestClient, token: str, org: str
) -> None:
    response = client.post(f"/organization/{org}/key", headers=bearer(token))

    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert key_ids(client) == ACME_KEYS


# -- GET /organization/{idOrg}/key ------------------------------------------------


def test_list_shows_keys_newest_first_with_public_keys_and_node_keys(client: TestClient) -> None:
    response = client.get("/organization/org-acme/key", headers=bearer(ADMIN))

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    keys = {key["id"]: key for key in body["data"]}
    assert [key["id"] for key in body["data"]] == ACME_KEYS
    assert keys["orgkey-acme-1"]["nodeKeys"] == [
        {"keyId": "orgkey-acme-1", "nodeId": "192.0.2.10"},
        {"keyId": "orgkey-acme-1", "nodeId": "192.0.2.11"},
    ]
    assert keys["orgkey-acme-3"]["nodeKeys"] == []
    assert keys["orgkey-acme-1"]["createdAt"] == "2026-01-01T09:00:00.000Z"
    for key in body["data"]:
        assert key["orgId"] == "org-acme"
        assert key["publicKey"].startswith("-----BEGIN PUBLIC KEY-----")
        assert "PRIVATE" not in key["publicKey"]


def test_list_is_refused_to_a_member(client: TestClient) -> None:
    response = client.get("/organization/org-acme/key", headers=bearer(MEMBER))

    assert response.status_code == 403
    assert response.json() == FORBIDDEN


# -- DELETE /organization/{idOrg}/key/{idKey} ------------------------------------


def test_delete_one_key_removes_it_and_its_node_keys_only(client: TestClient, store: Store) -> None:
    response = client.delete("/organization/org-acme/key/orgkey-acme-1", headers=bearer(OWNER))

    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Organization key deleted successfully"}
    assert key_ids(client) == ["orgkey-acme-3", "orgkey-acme-2"]
    assert node_keys(store) == {("orgkey-acme-2", "192.0.2.12")}
    with store.transaction() as uow:
        [event] = uow.events()
    assert (event.context, event.event, event.context_id) == (
        EventContext.orgkey,
        EventType.deleted,
        "orgkey-acme-1",
    )


@pytest.mark.parametrize(
    "key",
    [
        "orgkey-does-not-exist",
        "orgkey-globex-1",  # exists, but in another organization
    ],
)
def test_delete_one_key_answers_404_for_a_key_not_in_the_organization(
    client: TestClient, key: str
) -> None:
    response = client.delete(f"/organization/org-acme/key/{key}", headers=bearer(OWNER))

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "message": "Organization key not found or does not belong to this organization",
    }
    assert key_ids(client, "org-globex", GLOBEX_OWNER) == ["orgkey-globex-1"]


def test_delete_one_key_twice_answers_404_the_second_time(client: TestClient) -> None:
    client.delete("/organization/org-acme/key/orgkey-acme-2", headers=bearer(OWNER))

    response = client.delete("/organization/org-acme/key/orgkey-acme-2", headers=bearer(OWNER))

    assert response.status_code == 404


def test_delete_one_key_is_refused_to_a_member(client: TestClient) -> None:
    response = client.delete("/organization/org-acme/key/orgkey-acme-1", headers=bearer(MEMBER))

    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert key_ids(client) == ACME_KEYS
