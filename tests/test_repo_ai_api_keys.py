"""Repository AI API keys: createRepoAiApiKey, getRepoAiApiKeys, updateRepoAiApiKey,
deleteRepoAiApiKey (seed 002)."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from flashback_contract import Settings, create_app
from flashback_contract.contract import load_spec
from flashback_contract.domain import EventContext, EventType
from flashback_contract.store import Store, open_store
from tests.conftest import ADMIN, GLOBEX_OWNER, MEMBER, OWNER, bearer

REPO = "/repo/repo-acme-main/ai/apikey"
REPO_FORBIDDEN = {
    "success": False,
    "message": "Access denied: you do not have access to this repository",
}
NOT_FOUND = {"success": False, "message": "AI API key not found"}


def listed(client: TestClient, token: str = OWNER, path: str = REPO) -> list[dict[str, Any]]:
    response = client.get(path, headers=bearer(token))
    assert response.status_code == 200
    keys: list[dict[str, Any]] = response.json()["apiKeys"]
    return keys


def create(client: TestClient, name: str = "CI key", ai_type: str = "GOOGLE") -> dict[str, Any]:
    response = client.post(REPO, headers=bearer(MEMBER), json={"name": name, "aiType": ai_type})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


# -- POST /repo/{repoId}/ai/apikey -----------------------------------------------


def test_create_returns_id_key_and_secret_once(client: TestClient) -> None:
    body = create(client)

    assert body["success"] is True
    assert body["message"] == "AI API key created successfully"
    assert re.fullmatch(r"FB_AI_[0-9a-f]{32}", body["key"])
    assert len(body["secret"]) >= 40
    [newest, *_] = listed(client)
    assert newest["id"] == body["id"]
    assert newest["key"] == body["key"]
    assert newest["name"] == "CI key"
    assert newest["aiType"] == "GOOGLE"
    assert newest["deletedAt"] is None
    assert "secret" not in newest


def test_create_answers_201_as_documented(client: TestClient) -> None:
    responses = load_spec()["paths"]["/repo/{repoId}/ai/apikey"]["post"]["responses"]

    response = client.post(REPO, headers=bearer(OWNER), json={"name": "n", "aiType": "AWS"})

    assert response.status_code == 201
    assert "201" in responses and "200" not in responses
    assert set(response.json()) == {"success", "id", "key", "secret", "message"}


def test_created_keys_and_secrets_are_unique(client: TestClient) -> None:
    first, second = create(client), create(client)

    assert first["id"] != second["id"]
    assert first["key"] != second["key"]
    assert first["secret"] != second["secret"]


def test_the_store_keeps_only_the_sha256_of_the_secret(client: TestClient, store: Store) -> None:
    body = create(client)

    with store.transaction() as uow:
        stored = uow.ai_key(body["id"])
        dump = repr([uow.ai_keys("repo-acme-main"), uow.events()])
    assert stored is not None
    assert stored.secret_sha256 == hashlib.sha256(body["secret"].encode()).hexdigest()
    assert body["secret"] not in dump


def test_the_sqlite_file_holds_the_hash_and_never_the_secret(tmp_path: Path) -> None:
    database = tmp_path / "secrets.sqlite3"
    store = open_store(f"sqlite:///{database}")
    with create_app(Settings(store_url=store.url), store=store).test_client() as client:
        body = create(client)
        listed_keys = listed(client)
    store.close()

    assert all("secret" not in key for key in listed_keys)
    # The database, its WAL and the sessions' files beside it (control file, template).
    raw = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    assert body["secret"].encode() not in raw
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT * FROM repo_ai_api_keys").fetchall()
        (stored,) = connection.execute(
            "SELECT secret_sha256 FROM repo_ai_api_keys WHERE id = ?", (body["id"],)
        ).fetchone()
    assert body["secret"] not in repr(rows)
    assert stored == hashlib.sha256(body["secret"].encode()).hexdigest()


def test_create_logs_a_created_event(client: TestClient, store: Store) -> None:
    body = create(client, name="evented", ai_type="AWS")

    with store.transaction() as uow:
        [event] = uow.events()
    assert (event.context, event.event, event.context_id, event.user_id) == (
        EventContext.aillmapikey,
        EventType.created,
        body["id"],
        "user-acme-member",
    )
    assert json.loads(event.json_data or "") == {
        "aiType": "AWS",
        "name": "evented",
        "repoId": "repo-acme-main",
    }
    assert body["secret"] not in (event.json_data or "")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": "x"}, "'aiType' is a required property"),
        ({"aiType": "OPENAI"}, "'name' is a required property"),
        ({"name": "x", "aiType": "MISTRAL"}, "'MISTRAL' is not one of"),
        ({"name": "", "aiType": "OPENAI"}, "'' should be non-empty"),
        ({"name": 7, "aiType": "OPENAI"}, "7 is not of type 'string'"),
    ],
)
def test_create_rejects_invalid_bodies_with_a_clear_400_and_writes_nothing(
    client: TestClient, store: Store, payload: dict[str, Any], message: str
) -> None:
    response = client.post(REPO, headers=bearer(OWNER), json=payload)

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["message"].startswith(message)
    assert "\n" not in body["message"]
    assert len(listed(client)) == 2
    with store.transaction() as uow:
        assert uow.events() == []


@pytest.mark.parametrize("repo", ["repo-globex-main", "repo-does-not-exist"])
def test_create_in_another_organizations_or_an_unknown_repository_is_403(
    client: TestClient, repo: str
) -> None:
    response = client.post(
        f"/repo/{repo}/ai/apikey", headers=bearer(OWNER), json={"name": "x", "aiType": "OPENAI"}
    )

    assert response.status_code == 403
    assert response.json() == REPO_FORBIDDEN
    assert len(listed(client, GLOBEX_OWNER, "/repo/repo-globex-main/ai/apikey")) == 1


# -- GET /repo/{repoId}/ai/apikey --------------------------------------------------


@pytest.mark.parametrize("token", [OWNER, ADMIN, MEMBER])
def test_every_member_lists_active_keys_newest_first_without_secrets(
    client: TestClient, token: str
) -> None:
    keys = listed(client, token)

    assert [k["id"] for k in keys] == ["aikey-acme-anthropic", "aikey-acme-openai"]
    assert keys[0] == {
        "id": "aikey-acme-anthropic",
        "name": "Acme Anthropic",
        "repoId": "repo-acme-main",
        "key": "FB_AI_ac3e0000000000000000000000000002",
        "aiType": "ANTHROPIC",
        "createdAt": "2026-02-02T09:00:00.000Z",
        "deletedAt": None,
    }


def test_list_of_another_organizations_repository_is_403(client: TestClient) -> None:
    response = client.get("/repo/repo-globex-main/ai/apikey", headers=bearer(OWNER))

    assert response.status_code == 403
    assert response.json() == REPO_FORBIDDEN


# -- PUT /repo/{repoId}/ai/apikey/{apikeyId} ------------------------------------


def test_update_changes_only_the_name(client: TestClient, store: Store) -> None:
    before = {k["id"]: k for k in listed(client)}["aikey-acme-openai"]

    response = client.put(
        f"{REPO}/aikey-acme-openai", headers=bearer(MEMBER), json={"name": "Renamed"}
    )

    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "AI API key updated successfully"}
    after = {k["id"]: k for k in listed(client)}["aikey-acme-openai"]
    assert after == {**before, "name": "Renamed"}
    with store.transaction() as uow:
        [event] = uow.events()
    assert (event.context, event.event, event.context_id) == (
        EventContext.aillmapikey,
        EventType.updated,
        "aikey-acme-openai",
    )


def test_update_ignores_fields_other_than_name(client: TestClient) -> None:
    before = listed(client)

    response = client.put(
        f"{REPO}/aikey-acme-openai",
        headers=bearer(OWNER),
        json={"key": "FB_AI_forged", "aiType": "OTHER", "secret": "s"},
    )

    assert response.status_code == 200
    assert listed(client) == before


def test_update_without_a_name_changes_nothing_and_logs_nothing(
    client: TestClient, store: Store
) -> None:
    response = client.put(f"{REPO}/aikey-acme-openai", headers=bearer(OWNER), json={})

    assert response.status_code == 200
    with store.transaction() as uow:
        assert uow.events() == []


@pytest.mark.parametrize(
    "path",
    [
        f"{REPO}/aikey-acme-revoked",  # already deleted
        f"{REPO}/aikey-does-not-exist",
        f"{REPO}/aikey-globex-openai",  # exists, in another repository
    ],
)
def test_update_of_a_key_that_is_not_an_active_key_of_the_repository_is_404(
    client: TestClient, store: Store, path: str
) -> None:
    response = client.put(path, headers=bearer(OWNER), json={"name": "nope"})

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    with store.transaction() as uow:
        assert uow.events() == []
        assert {k.name for k in uow.ai_keys("repo-globex-main")} == {"Globex OpenAI"}


def test_update_in_another_organizations_repository_is_403(client: TestClient) -> None:
    response = client.put(
        "/repo/repo-globex-main/ai/apikey/aikey-globex-openai",
        headers=bearer(OWNER),
        json={"name": "hijacked"},
    )

    assert response.status_code == 403
    assert response.json() == REPO_FORBIDDEN


# -- DELETE /repo/{repoId}/ai/apikey/{apikeyId} (seed 002) -----------------------


def test_delete_answers_the_documented_message(client: TestClient) -> None:
    response = client.delete(f"{REPO}/aikey-acme-openai", headers=bearer(OWNER))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"success": True, "message": "AI API key deleted successfully"}


def test_delete_is_a_soft_delete_kept_for_audit_and_filtered_from_lists(
    client: TestClient, store: Store
) -> None:
    with store.transaction() as uow:
        before = uow.ai_key("aikey-acme-openai")

    client.delete(f"{REPO}/aikey-acme-openai", headers=bearer(OWNER))

    assert [k["id"] for k in listed(client)] == ["aikey-acme-anthropic"]
    with store.transaction() as uow:
        after = uow.ai_key("aikey-acme-openai")
    assert before is not None and after is not None
    assert after.deleted_at is not None
    # The secret's hash stays in the store for audit.
    assert after.secret_sha256 == before.secret_sha256
    assert (after.name, after.key) == (before.name, before.key)


def test_a_member_of_the_organization_may_delete_the_repositorys_keys(client: TestClient) -> None:
    response = client.delete(f"{REPO}/aikey-acme-anthropic", headers=bearer(MEMBER))

    assert response.status_code == 200


@pytest.mark.parametrize(
    "key",
    [
        "aikey-acme-revoked",  # deleted before
        "aikey-does-not-exist",
        "aikey-globex-openai",  # another repository's key
    ],
)
def test_delete_of_a_key_that_is_not_an_active_key_of_the_repository_is_404(
    client: TestClient, key: str
) -> None:
    response = client.delete(f"{REPO}/{key}", headers=bearer(OWNER))

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert len(listed(client, GLOBEX_OWNER, "/repo/repo-globex-main/ai/apikey")) == 1


def test_a_deleted_key_can_be_neither_deleted_again_nor_updated(client: TestClient) -> None:
    client.delete(f"{REPO}/aikey-acme-openai", headers=bearer(OWNER))

    again = client.delete(f"{REPO}/aikey-acme-openai", headers=bearer(OWNER))
    update = client.put(f"{REPO}/aikey-acme-openai", headers=bearer(OWNER), json={"name": "x"})

    assert (again.status_code, again.json()) == (404, NOT_FOUND)
    assert (update.status_code, update.json()) == (404, NOT_FOUND)


def test_delete_logs_a_deleted_event(client: TestClient, store: Store) -> None:
    client.delete(f"{REPO}/aikey-acme-openai", headers=bearer(ADMIN))

    with store.transaction() as uow:
        [event] = uow.events()
    assert (event.context, event.event, event.context_id, event.org_id, event.user_id) == (
        EventContext.aillmapikey,
        EventType.deleted,
        "aikey-acme-openai",
        "org-acme",
        "user-acme-admin",
    )


@pytest.mark.parametrize("repo", ["repo-globex-main", "repo-does-not-exist"])
def test_delete_in_another_organizations_or_an_unknown_repository_is_403(
    client: TestClient, repo: str
) -> None:
    response = client.delete(f"/repo/{repo}/ai/apikey/aikey-globex-openai", headers=bearer(OWNER))

    assert response.status_code == 403
    assert response.json() == REPO_FORBIDDEN
    assert len(listed(client, GLOBEX_OWNER, "/repo/repo-globex-main/ai/apikey")) == 1


def test_create_list_delete_round_trip_shows_the_key_gone(client: TestClient) -> None:
    created = create(client, name="temporary")
    assert created["id"] in [k["id"] for k in listed(client)]

    client.delete(f"{REPO}/{created['id']}", headers=bearer(OWNER))

    assert created["id"] not in [k["id"] for k in listed(client)]
