"""The public TypeScript client (`ApiClient.makeRequest`) works unchanged against the mock.

makeRequest sends no Accept header, a JSON body with Content-Type application/json when it
has data, and JSON-parses every successful body ("Invalid JSON response from server"
otherwise). These tests make the same requests and parse the same way.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import OWNER


def make_request(
    client: TestClient, path: str, method: str, data: dict[str, Any] | None = None
) -> Any:
    """What ApiClient.makeRequest does, byte for byte where it matters."""
    headers = {"Authorization": f"Bearer {OWNER}"}
    content = None
    if data is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(data).encode()
    request = client.build_request(method, f"/{path}", headers=headers, content=content)
    # httpx adds Accept: */*; the client sends none.
    del request.headers["Accept"]
    assert "accept" not in request.headers
    sent = client.send(request)
    assert sent.is_success, sent.text
    return json.loads(sent.text)  # raises like "Invalid JSON response from server"


def test_generate_org_key_gives_the_client_the_string_it_is_typed_to_return(
    client: TestClient,
) -> None:
    private_pem = make_request(client, "organization/org-acme/key", "POST")

    assert isinstance(private_pem, str)
    assert private_pem.startswith("-----BEGIN RSA PRIVATE KEY-----")


# The client's other calls, in an order that works on the demo data: (path, method, body,
# the fields of the JSON body it is typed to receive). The proxy tests replay them too.
CLIENT_CALLS: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("organization/org-acme/key", "GET", None, {"success", "data"}),
    ("organization/org-acme/key/orgkey-acme-2", "DELETE", None, {"success", "message"}),
    ("organization/org-acme/key", "DELETE", None, {"success", "message"}),
    ("repo/repo-acme-main/ai/apikey", "GET", None, {"success", "apiKeys"}),
    (
        "repo/repo-acme-main/ai/apikey",
        "POST",
        {"name": "from the client", "aiType": "OPENAI"},
        {"success", "id", "key", "secret", "message"},
    ),
    (
        "repo/repo-acme-main/ai/apikey/aikey-acme-openai",
        "PUT",
        {"name": "renamed by the client"},
        {"success", "message"},
    ),
    (
        "repo/repo-acme-main/ai/apikey/aikey-acme-openai",
        "DELETE",
        None,
        {"success", "message"},
    ),
]


@pytest.mark.parametrize(("path", "method", "data", "fields"), CLIENT_CALLS)
def test_every_other_client_call_gets_a_json_body_of_its_declared_type(
    client: TestClient, path: str, method: str, data: dict[str, Any] | None, fields: set[str]
) -> None:
    body = make_request(client, path, method, data)

    assert set(body) == fields
    assert body["success"] is True
