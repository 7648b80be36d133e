"""The request journal: GET /__mock/requests, its filters, its redaction and its bound."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from connexion import FlaskApp
from starlette.testclient import TestClient

from flashback_contract.mock.sessions import SessionMiddleware
from flashback_contract.store.memory import MemoryStore
from flashback_contract.store.sessions import MemorySessions, SessionPolicy
from tests.conftest import ADMIN, OWNER, bearer
from tests.stores import ADAPTERS
from tests.test_nodes import register_body
from tests.test_sessions import local_client, store_client

VOLATILE = ("id", "time", "durationMs")


def stable(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries without what changes from run to run (id, time, duration)."""
    for entry in entries:
        assert isinstance(entry["id"], int)
        assert entry["time"].endswith("Z")
        assert entry["durationMs"] >= 0
    return [{k: v for k, v in e.items() if k not in VOLATILE} for e in entries]


def journal(client: TestClient, prefix: str = "", **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"{prefix}/__mock/requests", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


@pytest.fixture
def local(make_app: Callable[..., FlaskApp]) -> Iterator[TestClient]:
    with local_client(make_app()) as client:
        yield client


def known_sequence(client: TestClient) -> None:
    client.get("/__session/w1/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER))
    client.post(
        "/__session/w1/repo/repo-acme-main/ai/apikey?source=ui",
        headers=bearer(OWNER),
        json={"name": "CI key", "aiType": "OPENAI"},
    )
    client.delete(
        "/repo/repo-acme-main/ai/apikey/aikey-acme-openai",
        headers=bearer(ADMIN) | {"X-Mock-Session": "w2"},
    )
    client.get("/__session/w1/repo/repo-acme-main/ai/apikey")
    client.get("/organization/org-acme/key", headers=bearer(OWNER))


def test_the_journal_lists_what_the_mock_answered_newest_first(local: TestClient) -> None:
    known_sequence(local)

    assert stable(journal(local)) == [
        {
            "session": None,
            "method": "GET",
            "path": "/organization/org-acme/key",
            "operationId": "getOrgKeys",
            "query": {},
            "status": 200,
            "userId": "user-acme-owner",
            "body": None,
        },
        {
            "session": "w1",
            "method": "GET",
            "path": "/repo/repo-acme-main/ai/apikey",
            "operationId": "getRepoAiApiKeys",
            "query": {},
            "status": 401,
            "userId": None,
            "body": None,
        },
        {
            "session": "w2",
            "method": "DELETE",
            "path": "/repo/repo-acme-main/ai/apikey/aikey-acme-openai",
            "operationId": "deleteRepoAiApiKey",
            "query": {},
            "status": 200,
            "userId": "user-acme-admin",
            "body": None,
        },
        {
            "session": "w1",
            "method": "POST",
            "path": "/repo/repo-acme-main/ai/apikey",
            "operationId": "createRepoAiApiKey",
            # The contract declares no query parameter: an undeclared one is refused, and
            # the journal shows the refusal with what was sent.
            "query": {"source": "ui"},
            "status": 400,
            "userId": "user-acme-owner",
            "body": {"name": "CI key", "aiType": "OPENAI"},
        },
        {
            "session": "w1",
            "method": "GET",
            "path": "/repo/repo-acme-main/ai/apikey",
            "operationId": "getRepoAiApiKeys",
            "query": {},
            "status": 200,
            "userId": "user-acme-owner",
            "body": None,
        },
    ]
    ids = [e["id"] for e in journal(local)]
    assert ids == sorted(ids, reverse=True)


def test_under_a_session_the_journal_is_that_sessions(local: TestClient) -> None:
    known_sequence(local)

    through_prefix = journal(local, prefix="/__session/w1")
    through_header = local.get("/__mock/requests", headers={"X-Mock-Session": "w2"}).json()

    assert [e["session"] for e in through_prefix] == ["w1", "w1", "w1"]
    assert [e["operationId"] for e in through_header["requests"]] == ["deleteRepoAiApiKey"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"session": "w1"}, ["getRepoAiApiKeys", "createRepoAiApiKey", "getRepoAiApiKeys"]),
        ({"operationId": "getRepoAiApiKeys"}, ["getRepoAiApiKeys", "getRepoAiApiKeys"]),
        ({"method": "DELETE"}, ["deleteRepoAiApiKey"]),
        ({"status": 401}, ["getRepoAiApiKeys"]),
        ({"session": "w1", "status": 400}, ["createRepoAiApiKey"]),
        ({"limit": 2}, ["getOrgKeys", "getRepoAiApiKeys"]),
        ({"session": "nobody"}, []),
    ],
)
def test_journal_filters(local: TestClient, params: dict[str, Any], expected: list[str]) -> None:
    known_sequence(local)

    assert [e["operationId"] for e in journal(local, **params)] == expected


def test_invalid_filters_are_a_400_envelope(local: TestClient) -> None:
    response = local.get("/__mock/requests", params={"status": "teapot"})

    assert response.status_code == 400
    assert response.json()["success"] is False


def test_the_journal_keeps_no_token_and_no_secret(
    local: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    jwt = local.post("/__mock/token", json={"user": "user-acme-owner"}).json()["token"]
    created = local.post(
        "/repo/repo-acme-main/ai/apikey",
        headers={"Authorization": f"Bearer {jwt}"},
        json={"name": "secret-free", "aiType": "AWS"},
    ).json()
    signed = register_body(capsys)
    local.post("/register", json=signed)
    local.post(
        "/repo/repo-acme-main/ai/apikey",
        headers=bearer(OWNER),
        json={"name": "x", "aiType": "AWS", "clientSecret": "hunter2", "nested": [{"token": "t"}]},
    )

    entries = journal(local)
    text = json.dumps(entries)

    assert jwt not in text and OWNER not in text
    assert created["secret"] not in text
    assert signed["signature"] not in text
    register = next(e for e in entries if e["operationId"] == "registerNode")
    assert register["body"]["signature"] == "[redacted]"
    assert register["body"]["ip"] == signed["ip"]
    assert entries[0]["body"]["clientSecret"] == "[redacted]"
    assert entries[0]["body"]["nested"] == [{"token": "[redacted]"}]


def test_control_api_and_swagger_ui_requests_are_not_journalled(local: TestClient) -> None:
    local.get("/__mock/sessions")
    local.get("/ui/")
    local.get("/openapi.json")

    assert journal(local) == []


def test_clearing_the_journal_of_one_session_keeps_the_others(local: TestClient) -> None:
    known_sequence(local)

    cleared = local.delete("/__mock/requests", params={"session": "w1"})
    local.delete("/__session/w2/__mock/requests")

    assert cleared.json() == {"success": True, "message": "Request journal cleared"}
    assert [e["session"] for e in journal(local)] == [None]
    local.delete("/__mock/requests")
    assert journal(local) == []


@pytest.mark.parametrize("kind", ADAPTERS)
def test_the_journal_keeps_the_last_requests_of_each_session(kind: str, tmp_path: Path) -> None:
    with store_client(kind, tmp_path, journal_size=3) as client:
        for skip in range(5):
            client.get(f"/__session/w1/organization/org-acme/key?n={skip}")
        client.get("/organization/org-acme/key?n=default")

        w1 = journal(client, session="w1", limit=100)
        everything = journal(client, limit=100)

    assert [e["query"]["n"] for e in w1] == ["4", "3", "2"]
    assert [e["query"]["n"] for e in everything] == ["default", "4", "3", "2"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_bound_holds_over_many_requests(kind: str, tmp_path: Path) -> None:
    with store_client(kind, tmp_path, journal_size=5) as client:
        for n in range(150):
            client.get(f"/__session/w1/organization/org-acme/key?n={n}")
        client.get("/organization/org-acme/key?n=default")

        w1 = journal(client, session="w1", limit=1000)
        everything = journal(client, limit=1000)

    assert [e["query"]["n"] for e in w1] == ["149", "148", "147", "146", "145"]
    assert len(everything) == 6


def test_journal_size_zero_turns_the_journal_off(make_app: Callable[..., FlaskApp]) -> None:
    with local_client(make_app(journal_size=0)) as client:
        client.get("/organization/org-acme/key", headers=bearer(OWNER))

        assert journal(client) == []


def test_a_body_nested_too_deep_to_parse_is_journalled_without_it(local: TestClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = local.post(
        "/repo/repo-acme-main/ai/apikey",
        headers=bearer(OWNER) | {"Content-Type": "application/json"},
        content=deep,
    )

    assert response.status_code == 400
    assert [(e["status"], e["body"]) for e in journal(local)] == [(400, None)]


class _OrderedCatalog(MemorySessions):
    """A memory catalog that notes when an entry is recorded, among the messages sent."""

    def __init__(self, events: list[str], in_a_database: bool) -> None:
        super().__init__(MemoryStore(), lambda uow: None, SessionPolicy())
        self.records_in_a_database = in_a_database
        self._events = events

    def record(self, entry: dict[str, Any]) -> None:
        self._events.append(f"record {entry['status']}")
        super().record(entry)


def _sent_in_order(in_a_database: bool, chunks: list[bytes]) -> list[str]:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        for n, chunk in enumerate(chunks):
            more = n < len(chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def send(message: dict[str, Any]) -> None:
        events.append(
            message["type"].removeprefix("http.response.")
            + (f" {message['body'].decode()}" if "body" in message else "")
        )
        # What the event loop runs next, once this task gives it back (another request).
        asyncio.get_running_loop().call_soon(events.append, "loop")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = SessionMiddleware(
        app, catalog=_OrderedCatalog(events, in_a_database), clock=lambda: datetime.now(UTC)
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/repo/r/ai/apikey",
        "headers": [],
        "query_string": b"",
    }
    asyncio.run(middleware(scope, receive, send))
    # Markers one after another are one turn of the loop.
    return [e for n, e in enumerate(events) if e != "loop" or events[n - 1] != "loop"]


def test_on_a_database_the_response_starts_once_its_entry_is_written() -> None:
    """Status line, headers and body leave back to back, after the journal's write (a
    database statement); a streamed body's start goes with its first chunk, the entry before
    its last."""
    assert _sent_in_order(True, [b"whole"]) == ["record 201", "start", "body whole", "loop"]
    assert _sent_in_order(True, [b"a", b"b", b"c"]) == [
        "start",
        "body a",
        "body b",
        "record 201",
        "body c",
        "loop",
    ]


def test_in_memory_the_entry_is_appended_after_the_last_byte_before_anything_else_runs() -> None:
    """Recording in memory is an append: the start is not held for it, and the entry is made
    once the body is handed to the server, before the event loop can read another request."""
    assert _sent_in_order(False, [b"whole"]) == ["start", "body whole", "record 201", "loop"]
    assert _sent_in_order(False, [b"a", b"b"]) == [
        "start",
        "body a",
        "body b",
        "record 201",
        "loop",
    ]
