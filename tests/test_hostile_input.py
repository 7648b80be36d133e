"""Hostile clients: every malformed or oversized request is a 4xx envelope that changes nothing."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from flashback_contract import Settings, create_app
from flashback_contract.mock.limits import MAX_HEADER_BYTES, MAX_URL_BYTES
from flashback_contract.mock.validators import PreparedRequestValidationOperation
from flashback_contract.store import Store
from flashback_contract.store.base import Dataset
from tests.conftest import OWNER, bearer
from tests.servers import serve_in_thread

AI_KEYS = "/repo/repo-acme-main/ai/apikey"
AI_KEY = f"{AI_KEYS}/aikey-acme-openai"
JSON = {"Content-Type": "application/json"}
VALID_CREATE = b'{"name": "CI key", "aiType": "OPENAI"}'


def snapshot(store: Store) -> Dataset:
    with store.transaction() as uow:
        return uow.everything()


@pytest.fixture
def checked(
    client: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> Iterator[TestClient]:
    """The client; afterwards, the store is unchanged and nothing was logged as an error."""
    before = snapshot(store)
    with caplog.at_level(logging.ERROR):
        yield client
    assert snapshot(store) == before
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def assert_refused(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"success", "message"}
    assert body["success"] is False
    if message is not None:
        assert body["message"] == message
    assert "Traceback" not in response.text


def nested(depth: int) -> bytes:
    return b'{"name": "x", "aiType": "OPENAI", "extra": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, nested(100_000)],
    ids=["arrays", "objects", "inside-a-valid-body"],
)
def test_json_nested_beyond_the_parser_limit_is_400(checked: TestClient, body: bytes) -> None:
    response = checked.post(AI_KEYS, content=body, headers={**bearer(OWNER), **JSON})

    assert_refused(response, 400, "Request body is nested too deeply")


def test_a_body_over_the_limit_is_413(checked: TestClient) -> None:
    body = b'{"name": "' + b"a" * (1024 * 1024) + b'", "aiType": "OPENAI"}'

    response = checked.post(AI_KEYS, content=body, headers={**bearer(OWNER), **JSON})

    assert_refused(response, 413, "Request body is larger than 1048576 bytes")


def test_the_body_limit_is_configurable(store: Store) -> None:
    app = create_app(Settings(store_url="memory://", max_body_bytes=32), store=store)
    with TestClient(app) as client:
        small = client.post(AI_KEYS, content=VALID_CREATE[:30], headers={**bearer(OWNER), **JSON})
        large = client.post(AI_KEYS, content=VALID_CREATE, headers={**bearer(OWNER), **JSON})

    assert small.status_code == 400  # read, parsed and refused as JSON
    assert_refused(large, 413, "Request body is larger than 32 bytes")


def _export(client: TestClient, prefix: str = "") -> dict[str, Any]:
    response = client.get(f"{prefix}/__mock/state", headers=bearer("control-secret"))
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


@pytest.mark.parametrize("prefix", ["", "/__session/big-import"])
def test_a_state_import_is_bounded_by_the_import_limit_not_the_body_limit(
    store: Store, prefix: str
) -> None:
    """A seed document outgrows the per-request bound long before the import's own."""
    settings = Settings(store_url="memory://", control_token="control-secret", max_body_bytes=1024)
    app = create_app(settings, store=store)
    with TestClient(app) as client:
        state = _export(client, prefix)
        state["organizations"][0]["name"] = "Acme, imported"
        body = json.dumps(state).encode()
        assert len(body) > settings.max_body_bytes

        imported = client.post(
            f"{prefix}/__mock/state", content=body, headers={**bearer("control-secret"), **JSON}
        )
        # Every other operation keeps the per-request bound.
        create = client.post(
            f"{prefix}{AI_KEYS}",
            content=b'{"name": "' + b"a" * 2048 + b'", "aiType": "OPENAI"}',
            headers={**bearer(OWNER), **JSON},
        )

        assert imported.status_code == 200, imported.text
        assert _export(client, prefix)["organizations"][0]["name"] == "Acme, imported"
        assert_refused(create, 413, "Request body is larger than 1024 bytes")


def test_a_state_import_over_the_import_limit_is_413_and_changes_nothing(store: Store) -> None:
    settings = Settings(
        store_url="memory://", control_token="control-secret", max_import_bytes=2048
    )
    app = create_app(settings, store=store)
    with TestClient(app) as client:
        before = _export(client)
        state = {**before, "organizations": [*before["organizations"], {"id": "o" * 3000}]}

        response = client.post("/__mock/state", json=state, headers=bearer("control-secret"))

        assert_refused(response, 413, "Request body is larger than 2048 bytes")
        assert _export(client) == before


def test_a_streamed_body_over_the_limit_is_413_whatever_its_headers_say(store: Store) -> None:
    """Chunked transfer encoding announces no length: the bytes read are counted."""
    app = create_app(Settings(store_url="memory://", max_body_bytes=4096), store=store)
    before = snapshot(store)

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'", "aiType": "OPENAI"}'

    with serve_in_thread(app) as base_url:
        response = httpx.post(
            base_url + AI_KEYS, content=chunks(), headers={**bearer(OWNER), **JSON}
        )

    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "Request body is larger than 4096 bytes")
    assert snapshot(store) == before


def test_a_very_long_url_is_414(checked: TestClient) -> None:
    response = checked.get(f"/repo/{'a' * MAX_URL_BYTES}/ai/apikey", headers=bearer(OWNER))

    assert_refused(response, 414)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer " + "t" * 100_000},
        {**bearer(OWNER), "X-Filler": "v" * MAX_HEADER_BYTES},
        {**bearer(OWNER), **{f"X-Filler-{i}": "v" for i in range(200)}},
    ],
    ids=["long-token", "long-header-value", "many-headers"],
)
def test_oversized_request_headers_are_431(checked: TestClient, headers: dict[str, str]) -> None:
    assert_refused(checked.get(AI_KEYS, headers=headers), 431)


def test_oversized_headers_are_refused_on_a_real_socket(store: Store) -> None:
    """The HTTP parser accepts megabytes of headers: the limit is the mock's own."""
    app = create_app(Settings(store_url="memory://"), store=store)
    with serve_in_thread(app) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                f"GET {AI_KEYS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OWNER}\r\n".encode()
                + b"X-Filler: "
                + b"v" * 2_000_000
                + b"\r\n\r\n"
            )
            head = sock.recv(256)

    assert head.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize(
    "repo_id",
    [
        "a" * 129,
        "a" * 5000,
        "a%00b",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "x'%20OR%20'1'='1",
        "x%22;%20DROP%20TABLE%20repositories;--",
        "%F0%9F%94%91",
    ],
    ids=[
        "129-chars",
        "5000-chars",
        "nul",
        "dot-dot-slash",
        "dot-dot",
        "sql-or",
        "sql-drop",
        "emoji",
    ],
)
def test_hostile_ids_are_refused(checked: TestClient, repo_id: str) -> None:
    """400 outside the contract's id pattern; ``..`` fits it and is an unknown id (403, 404);
    a decoded ``/`` leaves no route (404)."""
    for method, path in [("GET", f"/repo/{repo_id}/ai/apikey"), ("DELETE", f"{AI_KEYS}/{repo_id}")]:
        response = checked.request(method, path, headers=bearer(OWNER))
        assert_refused(response, response.status_code)
        assert response.status_code in (400, 403, 404)


@pytest.mark.parametrize(
    "body",
    [b'{"name": "\xff\xfe", "aiType": "OPENAI"}', b"\xc3\x28", b'{"name": "\xed\xa0\x80"}'],
    ids=["in-a-string", "bare", "surrogate"],
)
def test_invalid_utf8_is_400(checked: TestClient, body: bytes) -> None:
    response = checked.post(AI_KEYS, content=body, headers={**bearer(OWNER), **JSON})

    assert_refused(response, 400, "Request body is not valid UTF-8")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_wrong_content_type_is_415(checked: TestClient, content_type: str) -> None:
    headers = {**bearer(OWNER), "Content-Type": content_type}

    assert_refused(checked.post(AI_KEYS, content=VALID_CREATE, headers=headers), 415)


def test_a_body_without_content_type_is_415(checked: TestClient) -> None:
    response = checked.post(AI_KEYS, content=VALID_CREATE, headers=bearer(OWNER))

    assert_refused(response, 415, "Content-Type is required with a request body: application/json")


def test_an_unknown_charset_is_415(checked: TestClient) -> None:
    headers = {**bearer(OWNER), "Content-Type": "application/json;charset=no-such-charset"}

    assert_refused(checked.post(AI_KEYS, content=VALID_CREATE, headers=headers), 415)


def test_validation_kept_per_charset_is_bounded_and_answers_alike(
    checked: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Body validators are kept per media type and charset, at most a few per operation:
    a client sending ever new charsets gets each one refused as the first one was, and
    valid and invalid bodies in kept charsets are still told apart."""
    built: list[tuple[str, str]] = []
    new_body_validator = PreparedRequestValidationOperation._new_body_validator

    def counting(self: PreparedRequestValidationOperation, mime_type: str, encoding: str) -> Any:
        built.append((mime_type, encoding))
        return new_body_validator(self, mime_type, encoding)

    monkeypatch.setattr(PreparedRequestValidationOperation, "_new_body_validator", counting)
    kept = PreparedRequestValidationOperation.KEPT_BODY_VALIDATORS
    invalid = b'{"name": "CI key", "aiType": "NOT-A-TYPE"}'
    for _ in range(2):
        for charset in ("utf-8", "ascii"):
            headers = {**bearer(OWNER), "Content-Type": f"application/json;charset={charset}"}
            response = checked.post(AI_KEYS, content=invalid, headers=headers)
            assert_refused(response, 400)
            assert "NOT-A-TYPE" in response.json()["message"]
    assert built == [("application/json", "utf-8"), ("application/json", "ascii")]
    for n in range(kept + 4):
        headers = {**bearer(OWNER), "Content-Type": f"application/json;charset=x-{n}"}
        response = checked.post(AI_KEYS, content=VALID_CREATE, headers=headers)
        assert_refused(response, 415, f"Unknown charset 'x-{n}'")
    built.clear()
    for n in (0, kept + 3):
        headers = {**bearer(OWNER), "Content-Type": f"application/json;charset=x-{n}"}
        assert_refused(checked.post(AI_KEYS, content=VALID_CREATE, headers=headers), 415)
    # x-0 was kept; x-19 came after the operation had kept its fill, so it is built again.
    assert built == [("application/json", f"x-{kept + 3}")]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (AI_KEYS, b"[]"),
        (AI_KEYS, b'"CI key"'),
        (AI_KEYS, b"42"),
        (AI_KEYS, b"true"),
        (AI_KEY, b"[]"),
        ("/systemevent", b"[]"),
        ("/systemevent", b"null"),
        ("/register", b'["ip"]'),
    ],
)
def test_json_of_the_wrong_top_level_type_is_400(
    checked: TestClient, path: str, body: bytes
) -> None:
    method = "PUT" if path == AI_KEY else "POST"
    response = checked.request(method, path, content=body, headers={**bearer(OWNER), **JSON})

    assert_refused(response, 400)


def test_duplicate_keys_are_400(checked: TestClient) -> None:
    body = b'{"name": "first", "name": "second", "aiType": "OPENAI"}'

    response = checked.post(AI_KEYS, content=body, headers={**bearer(OWNER), **JSON})

    assert_refused(response, 400, "Duplicate key 'name' in the JSON body")


@pytest.mark.parametrize(
    "body",
    [b'{"skip": NaN}', b'{"skip": Infinity}', b'{"take": 1' + b"0" * 5000 + b"}"],
    ids=["nan", "infinity", "5001-digits"],
)
def test_numbers_json_does_not_have_are_400(checked: TestClient, body: bytes) -> None:
    response = checked.post("/systemevent", content=body, headers={**bearer(OWNER), **JSON})

    assert_refused(response, 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", AI_KEYS), ("DELETE", AI_KEY), ("GET", "/organization/org-acme/key")],
)
def test_query_parameters_the_contract_does_not_declare_are_400(
    checked: TestClient, method: str, path: str
) -> None:
    response = checked.request(method, f"{path}?cacheBust=1", headers=bearer(OWNER))

    assert_refused(response, 400, "Extra query parameter(s) cacheBust not in spec")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", AI_KEY, "DELETE, PUT"),
        ("TRACE", AI_KEYS, "GET, POST"),
        ("GET", "/register", "POST"),
        ("PUT", "/systemevent", "POST"),
    ],
)
def test_unsupported_methods_are_405_with_allow(
    checked: TestClient, method: str, path: str, allow: str
) -> None:
    response = checked.request(method, path, headers=bearer(OWNER))

    assert_refused(response, 405)
    assert response.headers["allow"] == allow


def test_a_huge_invalid_value_is_not_echoed_back_whole(checked: TestClient) -> None:
    body = b'{"name": "' + b"a" * 500_000 + b'", "aiType": "OPENAI"}'

    response = checked.post(AI_KEYS, content=body, headers={**bearer(OWNER), **JSON})

    assert_refused(response, 400)
    assert len(response.json()["message"]) <= 300


def test_a_body_within_every_limit_is_still_served(client: TestClient) -> None:
    """The limits refuse only what they name: a valid request next to them succeeds."""
    body: dict[str, Any] = {"name": "n" * 255, "aiType": "OPENAI"}

    response = client.post(AI_KEYS, json=body, headers=bearer(OWNER))

    assert response.status_code == 201


def test_a_yaml_import_with_aliases_is_400_before_it_expands(store: Store) -> None:
    """Twelve levels of nine aliases each would be 9**12 strings: refused unexpanded."""
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 12):
        previous, current = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{current}: &{current} [{', '.join([f'*{previous}'] * 9)}]")
    lines.append("users: *l")
    app = create_app(Settings(store_url="memory://", control_token="control"), store=store)
    before = snapshot(store)

    with TestClient(app) as client:
        response = client.post(
            "/__mock/state",
            content="\n".join(lines),
            headers={"Content-Type": "application/yaml", **bearer("control")},
        )

    assert_refused(response, 400)
    assert "YAML aliases" in response.json()["message"]
    assert snapshot(store) == before


@pytest.mark.parametrize("content_type", ["application/yaml", "application/json"])
@pytest.mark.parametrize(
    "document",
    ["users: " + "[" * 50_000 + "]" * 50_000, '{"users": ' + "[" * 100_000 + "]" * 100_000 + "}"],
    ids=["yaml-flow", "json"],
)
def test_a_deeply_nested_import_is_400(store: Store, content_type: str, document: str) -> None:
    app = create_app(Settings(store_url="memory://", control_token="control"), store=store)
    before = snapshot(store)

    with TestClient(app) as client:
        response = client.post(
            "/__mock/state",
            content=document,
            headers={"Content-Type": content_type, **bearer("control")},
        )

    assert_refused(response, 400)
    assert snapshot(store) == before


def test_a_yaml_import_with_an_ampersand_in_a_value_is_still_read(store: Store) -> None:
    app = create_app(Settings(store_url="memory://", control_token="control"), store=store)
    document = (
        "organizations: [{id: org-x, name: 'Smith & Sons'}]\n"
        "users: [{id: u, org: org-x, role: OWNER, token: t-x}]\n"
    )

    with TestClient(app) as client:
        response = client.post(
            "/__mock/state",
            content=document,
            headers={"Content-Type": "application/yaml", **bearer("control")},
        )

    assert response.status_code == 200, response.text
    assert [o.name for o in snapshot(store).organizations] == ["Smith & Sons"]


def test_a_large_body_mark_on_a_path_with_parameters_is_refused_at_start_up() -> None:
    """The limits compare paths as they are: a templated one would never match."""
    from flashback_contract.mock.app import large_body_routes

    spec = {"paths": {"/state": {"post": {"x-large-body": True}}, "/a/{id}": {"put": {}}}}
    assert large_body_routes("/__mock", spec) == {("POST", "/__mock/state")}
    with pytest.raises(ValueError, match=r"/a/\{id\}"):
        large_body_routes("", {"paths": {"/a/{id}": {"put": {"x-large-body": True}}}})


@pytest.mark.parametrize(
    "document",
    [
        "organizations: [{id: org-x, name: !!int abc}]\nusers: []\n",
        "organizations: []\nusers: [{id: u, org: o, role: !!bool maybe}]\n",
        "aiApiKeys: [{createdAt: 2026-13-45}]\n",
        "aiApiKeys: [{createdAt: !!timestamp 2026-02-30T10:00:00Z}]\n",
        "orgs: !!set {a}\nwhen: 2026-13-45\n",
    ],
    ids=["int", "bool", "date", "tagged-date", "through-pyyaml"],
)
def test_a_yaml_value_that_cannot_be_its_type_is_400_not_500(store: Store, document: str) -> None:
    app = create_app(Settings(store_url="memory://", control_token="control"), store=store)
    before = snapshot(store)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/__mock/state",
            content=document,
            headers={"Content-Type": "application/yaml", **bearer("control")},
        )

    assert_refused(response, 400)
    assert "not YAML or JSON" in response.json()["message"]
    assert snapshot(store) == before
