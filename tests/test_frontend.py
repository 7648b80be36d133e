"""What a frontend team uses: CORS, Swagger UI, the contract, Prefer, latency and faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from connexion import FlaskApp
from openapi_schema_validator import OAS30Validator
from starlette.testclient import TestClient

from flashback_contract.contract import load_spec, spec_path
from flashback_contract.mock.frontend import parse_prefer
from tests.conftest import OWNER, bearer

ORIGIN = "http://localhost:5173"


def preflight(client: TestClient, method: str, origin: str = ORIGIN) -> Any:
    return client.options(
        "/repo/repo-acme-main/ai/apikey/aikey-acme-openai",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_cors_preflight_allows_any_origin_the_contracts_methods_and_headers(
    client: TestClient,
) -> None:
    response = preflight(client, "DELETE")

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert set(response.headers["access-control-allow-methods"].split(", ")) == {
        "DELETE",
        "GET",
        "POST",
        "PUT",
    }
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "access-control-allow-credentials" not in response.headers


def test_cors_headers_are_on_errors_too(client: TestClient) -> None:
    response = client.get(
        "/organization/org-globex/key", headers={**bearer(OWNER), "Origin": ORIGIN}
    )

    assert response.status_code == 403
    assert response.headers["access-control-allow-origin"] == "*"


def test_configured_origins_only_and_a_refused_preflight_is_an_envelope(
    make_app: Callable[..., FlaskApp],
) -> None:
    with make_app(cors_origins=(ORIGIN,)).test_client() as client:
        allowed = preflight(client, "PUT")
        refused = preflight(client, "PUT", origin="http://evil.example")

    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {
        "success": False,
        "message": "Disallowed CORS origin (CORS preflight refused)",
    }


def test_no_cors_sends_no_cors_headers(make_app: Callable[..., FlaskApp]) -> None:
    with make_app(cors=False).test_client() as client:
        response = client.get(
            "/organization/org-acme/key", headers={**bearer(OWNER), "Origin": ORIGIN}
        )

    assert "access-control-allow-origin" not in response.headers


def test_swagger_ui_and_the_contract_are_served(client: TestClient) -> None:
    ui = client.get("/ui/")
    as_json = client.get("/openapi.json")
    as_yaml = client.get("/openapi.yaml")

    assert ui.status_code == 200 and "swagger" in ui.text.lower()
    assert set(as_json.json()["paths"]) == set(load_spec()["paths"])
    assert set(yaml.safe_load(as_yaml.text)["paths"]) == set(load_spec()["paths"])


def documented_examples() -> list[tuple[str, str, str, str]]:
    """(method, path, status, operationId) of every documented response with an example."""
    spec = load_spec()
    cases = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "delete"):
                continue
            for status in operation["responses"]:
                cases.append((method, path, status, operation["operationId"]))
    return cases


def concrete(path: str) -> str:
    return (
        path.replace("{idOrg}", "org-acme")
        .replace("{idKey}", "orgkey-acme-1")
        .replace("{repoId}", "repo-acme-main")
        .replace("{apikeyId}", "aikey-acme-openai")
    )


VALID_BODIES = {
    "createRepoAiApiKey": {"name": "n", "aiType": "AWS"},
    "updateRepoAiApiKey": {"name": "n"},
    "getSystemEvents": {},
    "registerNode": {
        "provider": "S3",
        "ip": "192.0.2.1",
        "status": "s",
        "region": "r",
        "version": "v",
        "timestamp": "2026-11-24T12:00:00Z",
        "signature": "QUJD",
    },
    "unregisterNode": {"ip": "192.0.2.1", "timestamp": "2026-11-24T12:00:00Z", "signature": "QUJD"},
}


@pytest.mark.parametrize(("method", "path", "status", "operation_id"), documented_examples())
def test_prefer_code_returns_the_documented_example_valid_against_its_schema(
    client: TestClient, store: Any, method: str, path: str, status: str, operation_id: str
) -> None:
    spec = load_spec()
    with store.transaction() as uow:
        state_before = uow.everything()

    response = client.request(
        method.upper(),
        concrete(path),
        headers={**bearer(OWNER), "Prefer": f"code={status}"},
        json=VALID_BODIES.get(operation_id),
    )

    assert response.status_code == int(status), response.text
    documented = spec["paths"][path][method]["responses"][status]
    if "$ref" in documented:
        documented = spec["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    content = documented["content"]["application/json"]
    expected = content.get("example") or next(iter(content["examples"].values()))["value"]
    assert response.json() == expected
    OAS30Validator(content["schema"] | {"components": spec["components"]}).validate(response.json())
    with store.transaction() as uow:
        assert uow.everything() == state_before  # forced responses touch nothing


def test_prefer_example_picks_a_named_example(client: TestClient) -> None:
    response = client.post(
        "/organization/org-acme/key", headers={**bearer(OWNER), "Prefer": "example=quota"}
    )

    assert response.status_code == 400
    assert response.json()["message"].startswith("Maximum number of organization keys (5)")


def test_prefer_code_200_negotiates_the_media_type(client: TestClient) -> None:
    response = client.post(
        "/organization/org-acme/key",
        headers={**bearer(OWNER), "Prefer": "code=200", "Accept": "application/x-pem-file"},
    )

    assert response.headers["content-type"].startswith("application/x-pem-file")
    assert response.text.startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_prefer_an_undocumented_code_is_400_naming_the_documented_ones(client: TestClient) -> None:
    response = client.get(
        "/organization/org-acme/key", headers={**bearer(OWNER), "Prefer": "code=404"}
    )

    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "Prefer: code=404 is not documented for getOrgKeys; "
        "documented codes: 200, 400, 401, 403, 500",
    }


def test_prefer_an_unknown_example_is_400(client: TestClient) -> None:
    response = client.get(
        "/organization/org-acme/key", headers={**bearer(OWNER), "Prefer": "example=nope"}
    )

    assert response.status_code == 400
    assert "documented examples: none" in response.json()["message"]


def test_prefer_still_needs_authentication_except_for_a_forced_401(client: TestClient) -> None:
    forced_403 = client.get("/organization/org-acme/key", headers={"Prefer": "code=403"})
    forced_401 = client.get("/organization/org-acme/key", headers={"Prefer": "code=401"})

    assert forced_403.status_code == 401
    assert forced_401.status_code == 401
    assert forced_401.json() == {"success": False, "message": "No authorization token provided"}


def test_prefer_delay_and_the_delay_setting_slow_responses_down(
    client: TestClient, make_app: Callable[..., FlaskApp]
) -> None:
    started = time.monotonic()
    client.get("/organization/org-acme/key", headers={**bearer(OWNER), "Prefer": "delay=300"})
    delayed = time.monotonic() - started
    with make_app(delay_ms=300).test_client() as slow:
        started = time.monotonic()
        slow.get("/organization/org-acme/key", headers=bearer(OWNER))
        configured = time.monotonic() - started

    # Lower bounds only: the delay is at least what was asked.
    assert delayed >= 0.3 and configured >= 0.3


@pytest.mark.parametrize("value", ["-1", "10001", "soon"])
def test_prefer_delay_out_of_bounds_is_400(client: TestClient, value: str) -> None:
    response = client.get(
        "/organization/org-acme/key", headers={**bearer(OWNER), "Prefer": f"delay={value}"}
    )

    assert response.status_code == 400
    assert "0 to 10000" in response.json()["message"]


def test_fail_rate_answers_the_documented_500_and_changes_nothing(
    make_app: Callable[..., FlaskApp], store: Any
) -> None:
    with make_app(fail_rate=1.0).test_client() as client:
        response = client.delete("/organization/org-acme/key", headers=bearer(OWNER))

    assert response.status_code == 500
    assert response.json() == {"success": False, "message": "Internal server error"}
    with store.transaction() as uow:
        assert len(uow.org_keys("org-acme")) == 3


def test_fault_injection_is_off_by_default(client: TestClient) -> None:
    statuses = {
        client.get("/organization/org-acme/key", headers=bearer(OWNER)).status_code
        for _ in range(20)
    }
    assert statuses == {200}


def test_prefer_parsing_follows_rfc_7240_separators() -> None:
    assert parse_prefer('code=403, example="quota"; delay=10, respond-async') == {
        "code": "403",
        "example": "quota",
        "delay": "10",
    }


def with_scope(app: FlaskApp) -> tuple[Any, list[dict[str, Any]]]:
    """The app behind an outer ASGI layer that keeps each request's scope, as a log would."""
    scopes: list[dict[str, Any]] = []

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
        await app(scope, receive, send)

    return outer, scopes


def test_a_forced_code_says_preference_applied_and_marks_the_request(app: FlaskApp) -> None:
    outer, scopes = with_scope(app)
    with TestClient(outer) as client:
        response = client.get(
            "/organization/org-acme/key",
            headers={**bearer(OWNER), "Prefer": "code=403, delay=1, respond-async"},
        )

    assert response.status_code == 403
    # Only honoured preferences are named; unknown ones (respond-async) are ignored.
    assert response.headers["preference-applied"] == "code=403, delay=1"
    assert scopes[-1]["state"]["forced"] == "prefer:code=403"


def test_a_forced_401_and_a_named_example_say_preference_applied(app: FlaskApp) -> None:
    outer, scopes = with_scope(app)
    with TestClient(outer) as client:
        forced_401 = client.get("/organization/org-acme/key", headers={"Prefer": "code=401"})
        marks = [scopes[-1]["state"]["forced"]]
        example = client.post(
            "/organization/org-acme/key", headers={**bearer(OWNER), "Prefer": "example=quota"}
        )
        marks.append(scopes[-1]["state"]["forced"])

    assert forced_401.headers["preference-applied"] == "code=401"
    assert example.headers["preference-applied"] == "example=quota"
    assert marks == ["prefer:code=401", "prefer:example=quota"]


def test_a_delay_alone_is_applied_to_the_real_answer_which_is_not_forced(app: FlaskApp) -> None:
    outer, scopes = with_scope(app)
    with TestClient(outer) as client:
        response = client.get(
            "/organization/org-acme/key", headers={**bearer(OWNER), "Prefer": "delay=1"}
        )

    assert response.status_code == 200 and len(response.json()["data"]) == 3
    assert response.headers["preference-applied"] == "delay=1"
    assert "forced" not in scopes[-1].get("state", {})


def test_no_prefer_no_preference_applied(client: TestClient) -> None:
    response = client.get(
        "/organization/org-acme/key", headers={**bearer(OWNER), "Prefer": "respond-async"}
    )

    assert "preference-applied" not in response.headers


def test_an_injected_failure_is_marked_as_forced(make_app: Callable[..., FlaskApp]) -> None:
    outer, scopes = with_scope(make_app(fail_rate=1.0))
    with TestClient(outer) as client:
        response = client.get("/organization/org-acme/key", headers=bearer(OWNER))

    assert response.status_code == 500
    assert scopes[-1]["state"]["forced"] == "fail-rate"
    assert "preference-applied" not in response.headers


def preflight_headers(client: TestClient, requested: str) -> Any:
    return client.options(
        "/repo/repo-acme-main/ai/apikey",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": requested,
        },
    )


def test_a_preflight_allows_x_request_id_and_prefer(client: TestClient) -> None:
    response = preflight_headers(client, "authorization, content-type, prefer, x-request-id")

    assert response.status_code == 200


def test_cors_header_allows_more_request_headers(make_app: Callable[..., FlaskApp]) -> None:
    with (
        make_app().test_client() as default,
        make_app(cors_headers=("X-Trace",)).test_client() as c,
    ):
        refused = preflight_headers(default, "x-trace")
        allowed = preflight_headers(c, "x-trace")

    assert refused.status_code == 400
    assert refused.json()["message"] == "Disallowed CORS headers (CORS preflight refused)"
    assert allowed.status_code == 200
    assert "X-Trace" in allowed.headers["access-control-allow-headers"].split(", ")


def test_the_readme_lists_exactly_the_headers_a_preflight_allows(client: TestClient) -> None:
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text("utf-8").split())
    listed = readme.split("exactly these request headers: ", 1)[1]
    listed_headers = {name.strip("`,. ") for name in listed.split(";", 1)[0].split(", ")}

    response = preflight_headers(client, "authorization")

    assert set(response.headers["access-control-allow-headers"].split(", ")) == listed_headers


def test_browser_apps_may_read_the_headers_the_mock_adds(client: TestClient) -> None:
    response = client.get("/organization/org-acme/key", headers={**bearer(OWNER), "Origin": ORIGIN})

    exposed = response.headers["access-control-expose-headers"].split(", ")
    assert {"X-Organization-Key-Id", "Preference-Applied", "Content-Disposition"} <= set(exposed)


MOCK = "http://127.0.0.1:9999"
THIS_MOCK = (
    "  - url: http://127.0.0.1:9999\n"
    "    description: This mock (the server that served this document)\n"
)


def test_the_yaml_contract_is_served_as_written_with_this_mock_first(app: FlaskApp) -> None:
    written = spec_path().read_text("utf-8")
    with TestClient(app, base_url=MOCK) as client:
        served = client.get("/openapi.yaml")

    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/yaml")
    assert served.text == written.replace("servers:\n", "servers:\n" + THIS_MOCK, 1)
    assert yaml.safe_load(served.text)["servers"][0]["url"] == MOCK


def test_the_yaml_contract_lists_the_default_address_once(app: FlaskApp) -> None:
    default = "http://127.0.0.1:8080"
    with TestClient(app, base_url=default) as client:
        servers = yaml.safe_load(client.get("/openapi.yaml").text)["servers"]

    urls = [server["url"] for server in servers]
    assert urls[0] == default and urls.count(default) == 1
    assert sorted(urls) == sorted(s["url"] for s in load_spec()["servers"])


def test_the_json_contract_keeps_the_written_key_order_with_this_mock_first(app: FlaskApp) -> None:
    with TestClient(app, base_url=MOCK) as client:
        served = client.get("/openapi.json")

    document = served.json()
    written = load_spec()
    assert served.text.endswith("}\n") and '", "' not in served.text[:200]
    assert list(document) == list(written)
    assert list(document["paths"]) == list(written["paths"])
    first = next(iter(written["paths"].values()))
    assert list(next(iter(document["paths"].values()))) == list(first)
    assert document["servers"][0] == {
        "url": MOCK,
        "description": "This mock (the server that served this document)",
    }
    assert document["servers"][1:] == written["servers"]
    assert {k: v for k, v in document.items() if k != "servers"} == {
        k: v for k, v in written.items() if k != "servers"
    }


def test_the_index_links_the_ui_the_contract_the_control_api_and_the_tokens(
    app: FlaskApp,
) -> None:
    with TestClient(app, base_url=MOCK) as client:
        as_json = client.get("/")
        as_html = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})

    assert as_json.status_code == 200
    body = as_json.json()
    assert body["success"] is True
    assert set(body["links"].values()) == {
        f"{MOCK}/ui/",
        f"{MOCK}/openapi.yaml",
        f"{MOCK}/openapi.json",
        f"{MOCK}/__mock/ui/",
    }
    assert {"token": OWNER, "user": "user-acme-owner", "org": "org-acme", "role": "OWNER"} in body[
        "tokens"
    ]
    assert as_html.headers["content-type"].startswith("text/html")
    for url in body["links"].values():
        assert f'href="{url}"' in as_html.text
    assert OWNER in as_html.text
