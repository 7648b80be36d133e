"""The mock control API under /__mock/: reset, export and import of the whole state."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import httpx
import pytest
from connexion import FlaskApp
from jsonschema import Draft202012Validator
from starlette.testclient import TestClient

from flashback_contract.domain import AiType, EventContext, EventType, Provider, Role
from flashback_contract.mock.app import control_spec_path
from flashback_contract.mock.seed import demo_seed_text, read_seed, validate_seed
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


def test_an_imported_read_by_is_read_state_per_user_and_exported_back(
    control: TestClient,
) -> None:
    control.delete("/repo/repo-acme-main/ai/apikey/aikey-acme-openai", headers=bearer(OWNER))
    control.delete("/organization/org-acme/key/orgkey-acme-2", headers=bearer(OWNER))
    state = control.get("/__mock/state", headers=bearer(CONTROL)).json()
    assert all(e["readBy"] == [] for e in state["systemEvents"])
    for event in state["systemEvents"]:
        if event["context"] == "orgkey":
            event["readBy"] = ["user-acme-owner"]

    assert control.post("/__mock/state", headers=bearer(CONTROL), json=state).status_code == 200

    def flags(token: str, **body: Any) -> dict[str, bool]:
        page = control.post("/systemevent", headers=bearer(token), json=body).json()
        return {e["context"]: e["showUnread"] for e in page["events"]}

    assert flags(OWNER) == {"orgkey": False, "aillmapikey": True}
    assert flags(OWNER, showUnread=True) == {"aillmapikey": True}
    assert flags("demo-acme-admin", showUnread=True) == {"orgkey": True, "aillmapikey": True}
    exported = control.get("/__mock/state", headers=bearer(CONTROL)).json()
    assert {e["context"]: e["readBy"] for e in exported["systemEvents"]} == {
        "orgkey": ["user-acme-owner"],
        "aillmapikey": [],
    }


def test_a_read_by_naming_an_unknown_user_is_refused(control: TestClient) -> None:
    control.delete("/organization/org-acme/key/orgkey-acme-2", headers=bearer(OWNER))
    before = control.get("/__mock/state", headers=bearer(CONTROL)).json()
    state = {
        **before,
        "systemEvents": [{**e, "readBy": ["user-nobody"]} for e in before["systemEvents"]],
    }

    response = control.post("/__mock/state", headers=bearer(CONTROL), json=state)

    assert response.status_code == 400
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

    assert set(served["paths"]) == {
        "/reset",
        "/state",
        "/sessions",
        "/sessions/{name}",
        "/requests",
        "/token",
        "/overrides",
    }
    assert control_spec_path().is_file()


def state_of(client: TestClient) -> Any:
    return client.get("/__mock/state", headers=bearer(CONTROL)).json()


def test_a_yaml_document_is_imported_like_json(control: TestClient) -> None:
    control.delete("/organization/org-acme/key", headers=bearer(OWNER))

    response = control.post(
        "/__mock/state",
        headers={**bearer(CONTROL), "Content-Type": "application/yaml"},
        content=demo_seed_text(),
    )

    assert response.json() == {"success": True, "message": "State imported"}
    assert acme_keys(control) == ["orgkey-acme-3", "orgkey-acme-2", "orgkey-acme-1"]


MINIMAL = "organizations: [{id: o, name: O}]\n"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            MINIMAL + "users:\n"
            "  - {id: u0, org: o, role: OWNER}\n"
            "  - {id: u1, org: o, role: USER}\n"
            "  - {id: u2, role: USER}\n",
            "users[2].org: required",
        ),
        (MINIMAL + "users: [{id: u, org: o, role: KING}]\n", "users[0].role: 'KING' is not one of"),
        (MINIMAL + "users: [{id: u, org: x, role: USER}]\n", "users[0].org: no organization 'x'"),
        (MINIMAL + "users: [{id: u, org: o, role: USER, colour: red}]\n", "users[0].colour: not"),
        (
            MINIMAL + "users: [{id: u, org: o, role: USER}]\n"
            "organizationKeys: [{id: k, org: o, publicKey: P, createdAt: 2026-01-01T00:00:00}]\n",
            "organizationKeys[0].createdAt: '2026-01-01T00:00:00' is not an ISO 8601 date-time",
        ),
        (
            MINIMAL + "users: [{id: u, org: o, role: USER}, {id: u, org: o, role: USER}]\n",
            "users[1].id: duplicate 'u'",
        ),
        (MINIMAL, "users: required"),
        (MINIMAL + "users: []\n", "users: must not be empty"),
        ("{}", "the document is empty"),
        ("", "the document is empty"),
        ("- a list", "expected a mapping at the top level"),
        ("users: [", "not YAML or JSON"),
    ],
    ids=[
        "missing-field",
        "unknown-role",
        "unknown-org",
        "unknown-field",
        "date-without-zone",
        "duplicate-id",
        "no-users",
        "empty-users",
        "empty-json",
        "empty-yaml",
        "not-a-mapping",
        "not-yaml",
    ],
)
def test_a_refused_document_names_the_bad_entry_and_changes_nothing(
    control: TestClient, document: str, problem: str
) -> None:
    before = state_of(control)

    response = control.post(
        "/__mock/state",
        headers={**bearer(CONTROL), "Content-Type": "application/yaml"},
        content=document,
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["message"].startswith("State not imported, nothing changed: " + problem)
    assert state_of(control) == before


def test_an_empty_json_document_is_refused(control: TestClient) -> None:
    before = state_of(control)

    response = control.post("/__mock/state", headers=bearer(CONTROL), json={})

    assert response.status_code == 400
    assert "the document is empty" in response.json()["message"]
    assert state_of(control) == before


def test_the_seed_schema_ships_in_the_package_and_names_the_domain_values() -> None:
    schema = json.loads(
        resources.files("flashback_contract.mock").joinpath("seed.schema.json").read_text()
    )
    items = {name: spec.get("items", {}) for name, spec in schema["properties"].items()}

    Draft202012Validator.check_schema(schema)
    assert items["users"]["properties"]["role"]["enum"] == [r.name for r in Role]
    assert items["aiApiKeys"]["properties"]["aiType"]["enum"] == [t.value for t in AiType]
    assert items["nodes"]["properties"]["provider"]["enum"] == [p.value for p in Provider]
    assert items["systemEvents"]["properties"]["context"]["enum"] == [c.name for c in EventContext]
    assert items["systemEvents"]["properties"]["event"]["enum"] == [e.name for e in EventType]


def test_the_demo_fixture_and_an_export_are_valid_seeds(control: TestClient) -> None:
    control.post(
        "/repo/repo-acme-main/ai/apikey",
        headers=bearer(OWNER),
        json={"name": "exported", "aiType": "AWS"},
    )
    assert read_seed(None)["users"]
    assert validate_seed(state_of(control))["systemEvents"]


EVIL = "http://evil.example"


def test_the_control_api_sends_no_cors_headers_by_default(
    make_app: Callable[..., FlaskApp],
) -> None:
    with make_app().test_client() as client:
        exported = client.get("/__mock/state", headers={"Origin": "http://localhost:5173"})
        preflight = client.options(
            "/__mock/reset",
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
        )
        contract = client.get("/organization/org-acme/key", headers={"Origin": EVIL})

    assert "access-control-allow-origin" not in exported.headers
    assert "access-control-allow-origin" not in preflight.headers
    # The contract's CORS is unchanged: any origin.
    assert contract.headers["access-control-allow-origin"] == "*"


def test_the_control_api_allows_only_origins_given_with_cors_origin(
    make_app: Callable[..., FlaskApp],
) -> None:
    app_origin = "http://localhost:5173"
    with make_app(control_token=CONTROL, cors_origins=(app_origin,)).test_client() as client:
        allowed = client.get("/__mock/state", headers={**bearer(CONTROL), "Origin": app_origin})
        refused = client.get("/__mock/state", headers={**bearer(CONTROL), "Origin": EVIL})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == app_origin
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": "http://localhost:5173", "Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["other-origin", "opaque-origin", "same-site-other-port", "cross-site-no-origin"],
)
def test_a_cross_site_simple_request_cannot_reset_the_mock(
    control: TestClient, headers: dict[str, str]
) -> None:
    control.delete("/organization/org-acme/key", headers=bearer(OWNER))

    response = control.post("/__mock/reset", headers={**bearer(CONTROL), **headers})

    assert response.status_code == 403
    assert response.json()["message"].startswith(
        "The mock control API refuses cross-site browser requests"
    )
    assert acme_keys(control) == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Origin": "http://testserver"}, {"Sec-Fetch-Site": "same-origin"}],
    ids=["no-browser", "same-origin", "same-origin-fetch"],
)
def test_same_origin_and_non_browser_calls_may_reset(
    control: TestClient, headers: dict[str, str]
) -> None:
    control.delete("/organization/org-acme/key", headers=bearer(OWNER))

    response = control.post("/__mock/reset", headers={**bearer(CONTROL), **headers})

    assert response.status_code == 200
    assert len(acme_keys(control)) == 3
