"""Sessions: isolated copies of the seed by path prefix or header, on every store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from connexion import FlaskApp
from starlette.testclient import TestClient

from flashback_contract import Settings, create_app
from flashback_contract.mock.services import EXTENSION_KEY, Services
from tests.conftest import OWNER, bearer
from tests.stores import ADAPTERS, open_adapter
from tests.test_cli_serve import start_serve

LOOPBACK = ("127.0.0.1", 50000)
SEEDED_KEYS = ["orgkey-acme-3", "orgkey-acme-2", "orgkey-acme-1"]


def local_client(app: FlaskApp) -> TestClient:
    """A client the control API answers: it comes from a loopback address."""
    return TestClient(app.middleware, client=LOOPBACK)


def acme_keys(client: TestClient, prefix: str = "", **headers: str) -> list[str]:
    response = client.get(f"{prefix}/organization/org-acme/key", headers=bearer(OWNER) | headers)
    assert response.status_code == 200, response.text
    return [k["id"] for k in response.json()["data"]]


def delete_key(client: TestClient, key_id: str, prefix: str = "", **headers: str) -> None:
    response = client.delete(
        f"{prefix}/organization/org-acme/key/{key_id}", headers=bearer(OWNER) | headers
    )
    assert response.status_code == 200, response.text


@contextmanager
def store_client(kind: str, tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    """A loopback client of an app over one store adapter; its sessions deleted afterwards
    (on PostgreSQL they are schemas beside the test's own)."""
    with open_adapter(kind, tmp_path) as store:
        app = create_app(
            Settings(store_url=store.url, validate_responses=True, **settings), store=store
        )
        with local_client(app) as client:
            try:
                yield client
            finally:
                for session in client.get("/__mock/sessions").json()["sessions"]:
                    client.delete(f"/__mock/sessions/{session['name']}")


@pytest.fixture(params=ADAPTERS)
def any_store_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """A loopback client of an app over each store adapter."""
    with store_client(request.param, tmp_path) as client:
        yield client


@pytest.fixture
def local(make_app: Callable[..., FlaskApp]) -> Iterator[TestClient]:
    with local_client(make_app()) as client:
        yield client


class Clock:
    """A clock the test moves forward."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def services_of(app: FlaskApp) -> Services:
    services = app.app.extensions[EXTENSION_KEY]
    assert isinstance(services, Services)
    return services


def test_sessions_and_the_default_state_are_isolated(any_store_client: TestClient) -> None:
    client = any_store_client

    delete_key(client, "orgkey-acme-1")
    delete_key(client, "orgkey-acme-2", prefix="/__session/w1")
    delete_key(client, "orgkey-acme-3", **{"X-Mock-Session": "w2"})

    assert acme_keys(client) == ["orgkey-acme-3", "orgkey-acme-2"]
    assert acme_keys(client, prefix="/__session/w1") == ["orgkey-acme-3", "orgkey-acme-1"]
    assert acme_keys(client, **{"X-Mock-Session": "w1"}) == ["orgkey-acme-3", "orgkey-acme-1"]
    assert acme_keys(client, prefix="/__session/w2") == ["orgkey-acme-2", "orgkey-acme-1"]


def test_resetting_one_session_leaves_the_others_alone(any_store_client: TestClient) -> None:
    client = any_store_client
    delete_key(client, "orgkey-acme-1")
    delete_key(client, "orgkey-acme-2", prefix="/__session/w1")
    delete_key(client, "orgkey-acme-3", prefix="/__session/w2")

    reset = client.post("/__session/w1/__mock/reset")

    assert reset.status_code == 200
    assert acme_keys(client, prefix="/__session/w1") == SEEDED_KEYS
    assert acme_keys(client, prefix="/__session/w2") == ["orgkey-acme-2", "orgkey-acme-1"]
    assert acme_keys(client) == ["orgkey-acme-3", "orgkey-acme-2"]


def test_reset_by_header_acts_on_that_session(local: TestClient) -> None:
    delete_key(local, "orgkey-acme-1")
    delete_key(local, "orgkey-acme-2", prefix="/__session/w1")

    local.post("/__mock/reset", headers={"X-Mock-Session": "w1"})

    assert acme_keys(local, prefix="/__session/w1") == SEEDED_KEYS
    assert acme_keys(local) == ["orgkey-acme-3", "orgkey-acme-2"]


def test_a_new_session_starts_from_the_seed_not_from_the_default_state(
    local: TestClient,
) -> None:
    delete_key(local, "orgkey-acme-1")

    assert acme_keys(local, prefix="/__session/fresh") == SEEDED_KEYS


def test_state_export_and_import_act_on_the_session(local: TestClient) -> None:
    delete_key(local, "orgkey-acme-2", prefix="/__session/w1")
    exported = local.get("/__session/w1/__mock/state").json()

    imported = local.post("/__session/w2/__mock/state", json=exported)

    assert imported.status_code == 200
    assert acme_keys(local, prefix="/__session/w2") == ["orgkey-acme-3", "orgkey-acme-1"]
    assert acme_keys(local) == SEEDED_KEYS
    default_keys = [k["id"] for k in local.get("/__mock/state").json()["organizationKeys"]]
    assert "orgkey-acme-2" in default_keys


def test_tokens_and_jwts_work_in_every_session(local: TestClient) -> None:
    jwt = local.post("/__mock/token", json={"user": "user-acme-owner"}).json()["token"]

    for prefix in ("", "/__session/w1", "/__session/w2"):
        response = local.get(
            f"{prefix}/organization/org-acme/key", headers={"Authorization": f"Bearer {jwt}"}
        )
        assert response.status_code == 200, prefix
        assert local.get(f"{prefix}/organization/org-acme/key").status_code == 401


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/__session/has%20space/organization/org-acme/key", {}),
        ("/__session/" + "x" * 65 + "/organization/org-acme/key", {}),
        ("/__session//organization/org-acme/key", {}),
        ("/__session/caf%C3%A9/organization/org-acme/key", {}),
        ("/organization/org-acme/key", {"X-Mock-Session": "a/b"}),
        ("/organization/org-acme/key", {"X-Mock-Session": ""}),
    ],
)
def test_invalid_session_names_are_a_400_envelope(
    local: TestClient, path: str, headers: dict[str, str]
) -> None:
    response = local.get(path, headers=bearer(OWNER) | headers)

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert "session name" in body["message"]
    assert local.get("/__mock/sessions").json() == {"sessions": []}


def test_the_session_limit_is_a_429_that_says_so(make_app: Callable[..., FlaskApp]) -> None:
    with local_client(make_app(max_sessions=2)) as client:
        acme_keys(client, prefix="/__session/a")
        acme_keys(client, prefix="/__session/b")

        refused = client.get("/__session/c/organization/org-acme/key", headers=bearer(OWNER))
        still_open = acme_keys(client, prefix="/__session/a")
        client.delete("/__mock/sessions/b")
        after_delete = client.get("/__session/c/organization/org-acme/key", headers=bearer(OWNER))

    assert refused.status_code == 429
    assert refused.json()["success"] is False
    assert "at most 2" in refused.json()["message"]
    assert "--max-sessions" in refused.json()["message"]
    assert still_open == SEEDED_KEYS
    assert after_delete.status_code == 200


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_idle_sessions_expire_after_the_ttl(kind: str, tmp_path: Path) -> None:
    clock = Clock()
    with open_adapter(kind, tmp_path) as store:
        app = create_app(Settings(store_url=store.url, session_ttl_seconds=60), store=store)
        services_of(app).clock = clock
        with local_client(app) as client:
            delete_key(client, "orgkey-acme-1", prefix="/__session/idle")
            clock.now += timedelta(seconds=30)
            delete_key(client, "orgkey-acme-2", prefix="/__session/busy")
            clock.now += timedelta(seconds=40)

            listed = [s["name"] for s in client.get("/__mock/sessions").json()["sessions"]]
            recreated = acme_keys(client, prefix="/__session/idle")
            busy = acme_keys(client, prefix="/__session/busy")

    assert listed == ["busy"]
    assert recreated == SEEDED_KEYS
    assert busy == ["orgkey-acme-3", "orgkey-acme-1"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_an_expired_session_used_again_starts_from_the_seed(kind: str, tmp_path: Path) -> None:
    clock = Clock()
    with open_adapter(kind, tmp_path) as store:
        app = create_app(Settings(store_url=store.url, session_ttl_seconds=60), store=store)
        services_of(app).clock = clock
        with local_client(app) as client:
            delete_key(client, "orgkey-acme-1", prefix="/__session/w1")
            clock.now += timedelta(seconds=59)
            kept = acme_keys(client, prefix="/__session/w1")
            clock.now += timedelta(seconds=60)
            renewed = acme_keys(client, prefix="/__session/w1")

    assert kept == ["orgkey-acme-3", "orgkey-acme-2"]
    assert renewed == SEEDED_KEYS


def test_expired_sessions_make_room_under_the_limit(make_app: Callable[..., FlaskApp]) -> None:
    clock = Clock()
    app = make_app(max_sessions=1, session_ttl_seconds=60)
    services_of(app).clock = clock
    with local_client(app) as client:
        acme_keys(client, prefix="/__session/old")
        clock.now += timedelta(seconds=61)
        response = client.get("/__session/new/organization/org-acme/key", headers=bearer(OWNER))

    assert response.status_code == 200


def test_sessions_are_listed_with_their_use_and_can_be_deleted(
    make_app: Callable[..., FlaskApp],
) -> None:
    clock = Clock()
    app = make_app()
    services_of(app).clock = clock
    with local_client(app) as client:
        acme_keys(client, prefix="/__session/w1")
        clock.now += timedelta(seconds=5)
        acme_keys(client, prefix="/__session/w2")
        clock.now += timedelta(seconds=5)
        delete_key(client, "orgkey-acme-1", prefix="/__session/w1")

        listed = client.get("/__mock/sessions").json()
        deleted = client.delete("/__mock/sessions/w1")
        again = client.delete("/__mock/sessions/w1")
        recreated = acme_keys(client, prefix="/__session/w1")

    assert listed == {
        "sessions": [
            {
                "name": "w1",
                "createdAt": "2026-03-01T12:00:00.000Z",
                "lastUsedAt": "2026-03-01T12:00:10.000Z",
                "requestCount": 2,
            },
            {
                "name": "w2",
                "createdAt": "2026-03-01T12:00:05.000Z",
                "lastUsedAt": "2026-03-01T12:00:05.000Z",
                "requestCount": 1,
            },
        ]
    }
    assert deleted.json() == {"success": True, "message": "Session w1 deleted"}
    assert again.status_code == 404
    assert again.json() == {"success": False, "message": "No session 'w1'"}
    assert recreated == SEEDED_KEYS


def test_cors_preflights_under_the_prefix_allow_the_session_header(local: TestClient) -> None:
    response = local.options(
        "/__session/w1/organization/org-acme/key/orgkey-acme-1",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization, x-mock-session",
        },
    )

    assert response.status_code == 200
    assert "X-Mock-Session" in response.headers["access-control-allow-headers"]
    # A preflight creates no session: only real requests do.
    assert local.get("/__mock/sessions").json() == {"sessions": []}


def test_swagger_ui_and_the_contract_are_served_under_the_prefix(local: TestClient) -> None:
    page = local.get("/__session/w1/ui/")
    served = local.get("/__session/w1/openapi.json")

    assert page.status_code == 200
    assert "/__session/w1/openapi.json" in page.text
    assert served.status_code == 200
    # "Try it out" calls the session, not the default state.
    assert served.json()["servers"][0]["url"] == "http://testserver/__session/w1"
    assert "url: http://testserver/__session/w1\n" in local.get("/__session/w1/openapi.yaml").text


def test_errors_under_the_prefix_keep_the_envelope(local: TestClient) -> None:
    missing = local.get("/__session/w1/no/such/path", headers=bearer(OWNER))
    wrong_method = local.put("/__session/w1/organization/org-acme/key", headers=bearer(OWNER))

    assert missing.status_code == 404
    assert missing.json() == {"success": False, "message": "Not Found"}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["success"] is False
    assert wrong_method.headers["Allow"]


@pytest.mark.slow
def test_two_server_processes_on_one_sqlite_file_share_their_sessions(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    first, first_url = start_serve("--store", store, cwd=tmp_path)
    second, second_url = start_serve("--store", store, cwd=tmp_path)
    owner = bearer(OWNER)
    try:
        with httpx.Client(base_url=first_url) as a, httpx.Client(base_url=second_url) as b:
            a.delete("/__session/w1/organization/org-acme/key/orgkey-acme-1", headers=bearer(OWNER))
            b.delete("/__session/w2/organization/org-acme/key/orgkey-acme-2", headers=bearer(OWNER))
            w1_through_b = b.get("/__session/w1/organization/org-acme/key", headers=bearer(OWNER))
            w2_through_a = a.get(
                "/organization/org-acme/key", headers=bearer(OWNER) | {"X-Mock-Session": "w2"}
            )
            default_through_b = b.get("/organization/org-acme/key", headers=bearer(OWNER))
            b.post("/__session/w1/__mock/reset")
            w1_after_reset = a.get("/__session/w1/organization/org-acme/key", headers=bearer(OWNER))
            sessions = a.get("/__mock/sessions").json()["sessions"]
            journal_of_w2 = a.get("/__mock/requests", params={"session": "w2"}).json()
            a.post(
                "/__session/w2/__mock/overrides",
                json={"operationId": "getOrgKeys", "status": 500, "times": 1},
            )
            scripted_through_b = b.get("/__session/w2/organization/org-acme/key", headers=owner)
            real_through_a = a.get("/__session/w2/organization/org-acme/key", headers=owner)
            spent_through_b = b.get("/__session/w2/__mock/overrides").json()
    finally:
        for process in (first, second):
            process.terminate()
            process.communicate(timeout=30)

    def ids(response: httpx.Response) -> list[str]:
        return [k["id"] for k in response.json()["data"]]

    assert ids(w1_through_b) == ["orgkey-acme-3", "orgkey-acme-2"]
    assert ids(w2_through_a) == ["orgkey-acme-3", "orgkey-acme-1"]
    assert ids(default_through_b) == SEEDED_KEYS
    assert ids(w1_after_reset) == SEEDED_KEYS
    assert {s["name"]: s["requestCount"] for s in sessions} == {"w1": 4, "w2": 2}
    assert [(e["method"], e["operationId"]) for e in journal_of_w2["requests"]] == [
        ("GET", "getOrgKeys"),
        ("DELETE", "deleteOrgKey"),
    ]
    assert (scripted_through_b.status_code, real_through_a.status_code) == (500, 200)
    assert spent_through_b == {"overrides": []}


def test_a_sessions_control_api_sends_no_cors_headers_by_default(local: TestClient) -> None:
    origin = {"Origin": "http://localhost:5173"}
    exported = local.get("/__session/w1/__mock/state", headers=origin)
    preflight = local.options(
        "/__session/w1/__mock/reset", headers=origin | {"Access-Control-Request-Method": "POST"}
    )
    contract = local.get("/__session/w1/organization/org-acme/key", headers=origin)

    assert "access-control-allow-origin" not in exported.headers
    assert "access-control-allow-origin" not in preflight.headers
    assert contract.headers["access-control-allow-origin"] == "*"


@pytest.mark.slow
def test_with_two_workers_on_sqlite_a_session_is_the_same_through_either(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'workers.sqlite3'}"
    process, base_url = start_serve("--store", store, "--workers", "2", cwd=tmp_path)
    owner = bearer(OWNER)
    try:
        # A new connection per request: the kernel spreads them over both workers.
        httpx.delete(
            f"{base_url}/__session/w1/organization/org-acme/key/orgkey-acme-1", headers=owner
        )
        httpx.post(
            f"{base_url}/__session/w1/__mock/overrides",
            json={"operationId": "getOrgKeys", "status": 500, "times": 1},
        )
        statuses = []
        listings = []
        for _ in range(12):
            response = httpx.get(
                f"{base_url}/__session/w1/organization/org-acme/key", headers=owner
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                listings.append([k["id"] for k in response.json()["data"]])
        default = httpx.get(f"{base_url}/organization/org-acme/key", headers=owner)
        journal = httpx.get(f"{base_url}/__mock/requests", params={"session": "w1"}).json()
        sessions = httpx.get(f"{base_url}/__mock/sessions").json()["sessions"]
    finally:
        process.terminate()
        process.communicate(timeout=60)

    assert statuses == [500] + [200] * 11
    assert listings == [["orgkey-acme-3", "orgkey-acme-2"]] * 11
    assert [k["id"] for k in default.json()["data"]] == SEEDED_KEYS
    assert len(journal["requests"]) == 13
    assert [(s["name"], s["requestCount"]) for s in sessions] == [("w1", 14)]
