"""Every error the server emits, the framework's own included, is the documented envelope."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from connexion import FlaskApp
from starlette.testclient import TestClient

from flashback_contract.mock.handlers import organization_keys
from flashback_contract.store import MemoryStore, Store
from tests.conftest import OWNER, bearer


def assert_envelope(response: object, status: int, message: str | None = None) -> str:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"success", "message"}
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message
    return str(body["message"])


def test_missing_token_is_401(client: TestClient) -> None:
    response = client.get("/organization/org-acme/key")

    assert_envelope(response, 401, "No authorization token provided")


@pytest.mark.parametrize(
    "authorization", ["Bearer not-a-demo-token", "Bearer ", "Basic ZGVtbzpkZW1v", "demo-acme-owner"]
)
def test_unknown_or_malformed_credentials_are_401(client: TestClient, authorization: str) -> None:
    response = client.get(
        "/repo/repo-acme-main/ai/apikey", headers={"Authorization": authorization}
    )

    assert_envelope(response, 401)


def test_unknown_route_is_404(client: TestClient) -> None:
    assert_envelope(client.get("/no/such/route", headers=bearer(OWNER)), 404, "Not Found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/organization/org-acme/key", "DELETE, GET, POST"),
        ("PUT", "/organization/org-acme/key/orgkey-acme-1", "DELETE"),
        ("GET", "/repo/repo-acme-main/ai/apikey/aikey-acme-openai", "DELETE, PUT"),
        ("DELETE", "/repo/repo-acme-main/ai/apikey", "GET, POST"),
    ],
)
def test_undeclared_method_is_405_listing_every_declared_method(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path, headers=bearer(OWNER))

    assert_envelope(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == allow


def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/repo/repo-acme-main/ai/apikey",
        headers={**bearer(OWNER), "Content-Type": "text/plain"},
        content=b"name=x",
    )

    message = assert_envelope(response, 415)
    assert "text/plain" in message


@pytest.mark.parametrize(
    "body", [b"{not json", b"\xff\xfe\x00", b"", b"[]", b'"just a string"', b"null"]
)
def test_malformed_json_bodies_are_400(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/repo/repo-acme-main/ai/apikey",
        headers={**bearer(OWNER), "Content-Type": "application/json"},
        content=body,
    )

    assert_envelope(response, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/organization/org%0Aacme/key",  # control character: misses connexion's router
        "/organization/org%20acme/key",
        "/repo/" + "r" * 129 + "/ai/apikey",
        "/repo/r%C3%A9po/ai/apikey",
    ],
)
def test_invalid_path_parameters_are_400(client: TestClient, path: str) -> None:
    assert_envelope(client.get(path, headers=bearer(OWNER)), 400)


def test_unexpected_exception_is_500_without_details(
    monkeypatch: pytest.MonkeyPatch,
    make_app: Callable[..., FlaskApp],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(idOrg: str, token_info: dict[str, object]) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(organization_keys, "getOrgKeys", explode)
    with caplog.at_level(logging.ERROR), make_app().test_client() as client:
        response = client.get("/organization/org-acme/key", headers=bearer(OWNER))

    assert_envelope(response, 500, "Internal server error")
    assert "secret internal detail" not in response.text
    assert "secret internal detail" in caplog.text


class FailingEventsStore(MemoryStore):
    """A store whose event log breaks: the change before it must not survive."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def transaction(self):  # type: ignore[no-untyped-def]
        store = self
        inner = super().transaction()

        class _Wrapped:
            def __enter__(self):  # type: ignore[no-untyped-def]
                uow = inner.__enter__()
                if store.fail:

                    def broken_add_event(event: object) -> int:
                        raise OSError("disk full")

                    uow.add_event = broken_add_event  # type: ignore[method-assign]
                return uow

            def __exit__(self, *exc: object) -> object:
                return inner.__exit__(*exc)  # type: ignore[arg-type]

        return _Wrapped()


@pytest.mark.parametrize(
    ("method", "path", "json"),
    [
        ("DELETE", "/organization/org-acme/key", None),
        ("DELETE", "/organization/org-acme/key/orgkey-acme-1", None),
        ("POST", "/organization/org-acme/key", None),
        ("DELETE", "/repo/repo-acme-main/ai/apikey/aikey-acme-openai", None),
        ("PUT", "/repo/repo-acme-main/ai/apikey/aikey-acme-openai", {"name": "x"}),
        ("POST", "/repo/repo-acme-main/ai/apikey", {"name": "x", "aiType": "AWS"}),
    ],
)
def test_a_failure_mid_transaction_is_500_and_leaves_no_partial_write(
    settings: object, method: str, path: str, json: object
) -> None:
    from flashback_contract import create_app

    store = FailingEventsStore()
    app = create_app(settings, store=store)  # type: ignore[arg-type]
    with app.test_client() as client:
        before = state(store)
        store.fail = True
        response = client.request(method, path, headers=bearer(OWNER), json=json)
        store.fail = False

        assert_envelope(response, 500, "Internal server error")
        assert state(store) == before


def state(store: Store) -> object:
    with store.transaction() as uow:
        return (
            uow.org_keys("org-acme"),
            uow.ai_keys("repo-acme-main"),
            uow.ai_key("aikey-acme-openai"),
            uow.events(),
        )


def test_authentication_is_checked_before_validation(client: TestClient) -> None:
    response = client.post("/repo/repo-acme-main/ai/apikey", json={"unexpected": True})

    assert_envelope(response, 401, "No authorization token provided")
