"""Scripted answers (POST /__mock/overrides): per session, counted, checked against the contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import OWNER, bearer
from tests.stores import ADAPTERS
from tests.test_sessions import store_client

KEYS = "/repo/repo-acme-main/ai/apikey"


@pytest.fixture(params=ADAPTERS)
def local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    with store_client(request.param, tmp_path) as client:
        yield client


def override(client: TestClient, prefix: str = "", **body: Any) -> Any:
    response = client.post(f"{prefix}/__mock/overrides", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def ai_key_ids(client: TestClient, prefix: str = "") -> list[str]:
    return [k["id"] for k in client.get(f"{prefix}{KEYS}", headers=bearer(OWNER)).json()["apiKeys"]]


def test_a_scripted_500_then_the_real_answer(local: TestClient) -> None:
    created = override(
        local,
        "/__session/w1",
        operationId="deleteRepoAiApiKey",
        params={"apikeyId": "aikey-acme-openai"},
        status=500,
        times=1,
    )

    first = local.delete(f"/__session/w1{KEYS}/aikey-acme-openai", headers=bearer(OWNER))
    still_there = ai_key_ids(local, "/__session/w1")
    second = local.delete(f"/__session/w1{KEYS}/aikey-acme-openai", headers=bearer(OWNER))

    assert created["remaining"] == 1 and created["status"] == 500
    assert first.status_code == 500
    assert first.json() == {"success": False, "message": "Internal server error"}
    assert "aikey-acme-openai" in still_there
    assert second.status_code == 200
    assert "aikey-acme-openai" not in ai_key_ids(local, "/__session/w1")


def test_overrides_match_by_params(local: TestClient) -> None:
    override(
        local,
        operationId="deleteRepoAiApiKey",
        params={"apikeyId": "aikey-acme-openai"},
        status=404,
    )

    other = local.delete(f"{KEYS}/aikey-acme-anthropic", headers=bearer(OWNER))
    matching = local.delete(f"{KEYS}/aikey-acme-openai", headers=bearer(OWNER))
    again = local.delete(f"{KEYS}/aikey-acme-openai", headers=bearer(OWNER))

    assert other.status_code == 200
    assert matching.status_code == 404
    # Without `times`, an override answers until it is cleared.
    assert again.status_code == 404
    assert ai_key_ids(local) == ["aikey-acme-openai"]


def test_overrides_answer_a_documented_example_or_a_valid_body(local: TestClient) -> None:
    override(
        local,
        operationId="getRepoAiApiKeys",
        status=200,
        body={"success": True, "apiKeys": []},
        times=1,
    )
    override(local, operationId="getOrgKeys", status=403, times=1)

    scripted_body = local.get(KEYS, headers=bearer(OWNER))
    documented = local.get("/organization/org-acme/key", headers=bearer(OWNER))

    assert scripted_body.status_code == 200
    assert scripted_body.json() == {"success": True, "apiKeys": []}
    assert documented.status_code == 403
    assert documented.json()["success"] is False


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"operationId": "deleteRepoAiApiKey", "status": 418}, "status 418 is not documented"),
        ({"operationId": "noSuchOperation", "status": 500}, "no operation 'noSuchOperation'"),
        (
            {"operationId": "getRepoAiApiKeys", "status": 200, "body": {"success": "yes"}},
            "does not match the documented schema of getRepoAiApiKeys 200",
        ),
        (
            {"operationId": "getRepoAiApiKeys", "status": 200, "body": {"apiKeys": [{"id": 7}]}},
            "apiKeys/0",
        ),
        (
            {"operationId": "getOrgKeys", "status": 403, "example": "no-such-example"},
            "no-such-example",
        ),
        ({"operationId": "getOrgKeys", "status": 200, "times": 0}, "times"),
    ],
)
def test_an_override_that_breaks_the_contract_is_refused(
    local: TestClient, body: dict[str, Any], problem: str
) -> None:
    response = local.post("/__mock/overrides", json=body)

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert problem in response.json()["message"]
    assert local.get("/__mock/overrides").json() == {"overrides": []}


def test_overrides_are_per_session(local: TestClient) -> None:
    override(local, "/__session/w1", operationId="getRepoAiApiKeys", status=500)

    in_w1 = local.get(f"/__session/w1{KEYS}", headers=bearer(OWNER))
    in_w2 = local.get(f"/__session/w2{KEYS}", headers=bearer(OWNER))
    by_header = local.get(KEYS, headers=bearer(OWNER) | {"X-Mock-Session": "w1"})
    default = local.get(KEYS, headers=bearer(OWNER))

    assert (in_w1.status_code, in_w2.status_code) == (500, 200)
    assert (by_header.status_code, default.status_code) == (500, 200)
    assert len(local.get("/__session/w1/__mock/overrides").json()["overrides"]) == 1
    assert local.get("/__session/w2/__mock/overrides").json() == {"overrides": []}


def test_listing_shows_remaining_counts_and_delete_or_reset_clears(local: TestClient) -> None:
    override(local, operationId="getRepoAiApiKeys", status=500, times=3)
    override(local, operationId="getOrgKeys", status=500)
    local.get(KEYS, headers=bearer(OWNER))

    listed = local.get("/__mock/overrides").json()["overrides"]
    cleared = local.delete("/__mock/overrides")
    after_clear = local.get("/__mock/overrides").json()
    override(local, operationId="getOrgKeys", status=500)
    local.post("/__mock/reset")

    assert [(o["operationId"], o["remaining"]) for o in listed] == [
        ("getOrgKeys", None),
        ("getRepoAiApiKeys", 2),
    ]
    assert cleared.json() == {"success": True, "message": "Overrides cleared"}
    assert after_clear == {"overrides": []}
    assert local.get("/__mock/overrides").json() == {"overrides": []}
    assert local.get("/organization/org-acme/key", headers=bearer(OWNER)).status_code == 200


def test_the_newest_matching_override_wins(local: TestClient) -> None:
    override(local, operationId="getOrgKeys", status=500)
    override(local, operationId="getOrgKeys", status=403, times=1)

    first = local.get("/organization/org-acme/key", headers=bearer(OWNER))
    second = local.get("/organization/org-acme/key", headers=bearer(OWNER))

    assert (first.status_code, second.status_code) == (403, 500)


def test_an_overridden_request_is_journalled_with_its_scripted_status(local: TestClient) -> None:
    override(local, operationId="getOrgKeys", status=500, times=1)
    local.get("/organization/org-acme/key", headers=bearer(OWNER))

    entry = local.get("/__mock/requests").json()["requests"][0]

    assert (entry["operationId"], entry["status"]) == ("getOrgKeys", 500)
