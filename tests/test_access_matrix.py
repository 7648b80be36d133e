"""Who may call what: every operation against every kind of caller, on a fresh store each time."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from flashback_contract.store import Store
from tests.conftest import ADMIN, GLOBEX_OWNER, MEMBER, OWNER

OPERATIONS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "deleteOrgKeys": ("DELETE", "/organization/org-acme/key", None),
    "generateOrgKey": ("POST", "/organization/org-acme/key", None),
    "getOrgKeys": ("GET", "/organization/org-acme/key", None),
    "deleteOrgKey": ("DELETE", "/organization/org-acme/key/orgkey-acme-1", None),
    "createRepoAiApiKey": (
        "POST",
        "/repo/repo-acme-main/ai/apikey",
        {"name": "n", "aiType": "AWS"},
    ),
    "getRepoAiApiKeys": ("GET", "/repo/repo-acme-main/ai/apikey", None),
    "updateRepoAiApiKey": (
        "PUT",
        "/repo/repo-acme-main/ai/apikey/aikey-acme-openai",
        {"name": "n"},
    ),
    "deleteRepoAiApiKey": ("DELETE", "/repo/repo-acme-main/ai/apikey/aikey-acme-openai", None),
}
ORG_KEY_OPERATIONS = {"deleteOrgKeys", "generateOrgKey", "getOrgKeys", "deleteOrgKey"}
CALLERS = {
    "owner": OWNER,
    "administrator": ADMIN,
    "member": MEMBER,
    "other-org-owner": GLOBEX_OWNER,
    "no-token": None,
    "unknown-token": "not-a-token",
}


def expected_status(operation: str, caller: str) -> int:
    if caller in ("no-token", "unknown-token"):
        return 401
    if caller == "other-org-owner":
        return 403
    if operation in ORG_KEY_OPERATIONS and caller == "member":
        return 403  # organization keys need ADMINISTRATORS or OWNER
    return 201 if operation == "createRepoAiApiKey" else 200


def snapshot(store: Store) -> object:
    with store.transaction() as uow:
        return (
            uow.org_keys("org-acme"),
            uow.org_keys("org-globex"),
            uow.ai_key("aikey-acme-openai"),
            uow.ai_keys("repo-acme-main"),
            uow.events(),
        )


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_access_matrix(client: TestClient, store: Store, operation: str, caller: str) -> None:
    method, path, body = OPERATIONS[operation]
    token = CALLERS[caller]
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    before = snapshot(store)

    response = client.request(method, path, headers=headers, json=body)

    expected = expected_status(operation, caller)
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.json()["success"] is False
        assert snapshot(store) == before, "a refused request changed state"
    elif method != "GET":
        assert snapshot(store) != before, "an accepted write changed nothing"
