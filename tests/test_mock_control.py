"""The mock control API under /__mock/: reset, export and import of the whole state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from connexion import FlaskApp
from starlette.testclient import TestClient

from flashback_contract.mock.app import control_spec_path
from tests.conftest import OWNER, bearer
from tests.servers import serve_in_thread

CONTROL = "control-secret"


@pytest.fixture
def control(make_app: Callable[..., FlaskApp]) -> Iterator[TestClient]:
    with make_app(control_token=CONTROL).test_client() as client:
        yield client


def acme_keys(client: TestClient) -> list[str]:
    response = client.get("/organization/org-acme/key", headers=bearer(OWNER))
    return [k["id"] for k in response.json()["data"]]


def test_reset_restores_the_seed(control: TestClient) -> None:
    control.delete("/organization/org-acme/key", headers=bearer(OWNER))
    assert acme_keys(control) == []

    response = control.post("/__mock/reset", headers=bearer(CONTROL))

    assert response.json() == {"success": True, "message": "State reset to the seed"}
    assert acme_keys(control) == ["orgkey-acme-3", "orgkey-acme-2", "orgkey-acme-1"]
    events = control.post("/systemevent", headers=bearer(OWNER), json={}).json()
    assert events["total"] == 0


def test_export_then_import_restores_everything_but_secrets(control: TestClient) -> None:
    created = control.post(
        "/repo/repo-acme-main/ai/apikey",
        headers=bearer(OWNER),
        json={"name": "exported", "aiType": "AWS"},
    ).json()
    control.delete("/organization/org-acme/key/orgkey-acme-2", headers=bearer(OWNER))
    exported = control.get("/__mock/state", headers=bearer(CONTROL)).json()
    keys_before = control.get("/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER)).json()

    control.post("/__mock/reset", headers=bearer(CONTROL))
    imported = control.post("/__mock/state", headers=bearer(CONTROL), json=exported)

    assert imported.json() == {"success": True, "message": "State imported"}
    assert acme_keys(control) == ["orgkey-acme-3", "orgkey-acme-1"]
    keys_after = control.get("/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER)).json()
    assert keys_after == keys_before
    assert created["secret"] not in str(exported)
    assert "secret" not in str(exported).lower().replace("secrets", "")
    assert {e["context"] for e in exported["systemEvents"]} == {"aillmapikey", "orgkey"}
    assert control.post("/systemevent", headers=bearer(OWNER), json={}).json()["total"] == 2


@pytest.mark.parametrize(
    "state",
    [
        {"organizations": [{"id": "org-x"}]},  # no name
        {
            "organizations": [{"id": "o", "name": "O"}],
            "users": [{"id": "u", "org": "o", "role": "KING"}],
        },
        {
            "organizationKeys": [
                {"id": "k", "org": "o", "publicKey": "P", "createdAt": "not a date"}
            ]
        },
    ],
)
def test_an_invalid_import_changes_nothing(control: TestClient, state: dict[str, Any]) -> None:
    before = control.get("/__mock/state", headers=bearer(CONTROL)).json()

    response = control.post("/__mock/state", headers=bearer(CONTROL), json=state)

    assert response.status_code == 400
    assert response.json()["message"].startswith("State not imported, nothing changed")
    assert control.get("/__mock/state", headers=bearer(CONTROL)).json() == before


@pytest.mark.parametrize("authorization", [None, "Bearer demo-acme-owner", "Bearer wrong"])
def test_with_a_control_token_nothing_else_opens_the_control_api(
    control: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = control.post("/__mock/reset", headers=headers)

    assert response.status_code == 401
    assert response.json()["success"] is False


def test_without_a_control_token_loopback_clients_may_reset(
    make_app: Callable[..., FlaskApp],
) -> None:
    with serve_in_thread(make_app()) as url:
        httpx.delete(f"{url}/organization/org-acme/key", headers=bearer(OWNER))
        response = httpx.post(f"{url}/__mock/reset")
        keys = httpx.get(f"{url}/organization/org-acme/key", headers=bearer(OWNER)).json()

    assert response.status_code == 200
    assert len(keys["data"]) == 3


def test_without_a_control_token_other_clients_are_refused(
    make_app: Callable[..., FlaskApp],
) -> None:
    # The in-process test client is not a loopback address: it stands for a remote client.
    with make_app().test_client() as client:
        response = client.post("/__mock/reset")

    assert response.status_code == 403
    assert "loopback clients only" in response.json()["message"]


def test_the_control_api_has_its_own_contract(control: TestClient) -> None:
    served = control.get("/__mock/openapi.json").json()

    assert set(served["paths"]) == {"/reset", "/state"}
    assert control_spec_path().is_file()
