"""The contract says what the Flashback documentation says, and keeps its own decisions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from flashback_contract.contract import load_spec
from flashback_contract.mock.crypto import new_ai_api_key
from flashback_contract.mock.seed import read_seed
from tests.conftest import OWNER, bearer

# operationId: (documentation page, its title, the first words of its description)
DOCUMENTED = {
    "deleteOrgKeys": (
        "delete__organization_{orgId}_key",
        "Delete Organization Keys",
        "Permanently delete all organization keys for the specified organization.",
    ),
    "generateOrgKey": (
        "post__organization_{orgId}_key",
        "Generate Organization Key",
        "Generate a new RSA key pair for organization authentication and node registration.",
    ),
    "getOrgKeys": (
        "get__organization_{orgId}_key",
        "List Organization Keys",
        "Retrieve all organization keys with their associated node information",
    ),
    "deleteOrgKey": (
        "delete__organization_{orgId}_key_{keyId}",
        "Delete Specific Organization Key",
        "Delete a specific organization key by its ID.",
    ),
    "createRepoAiApiKey": (
        "post__repo_{repoId}_ai_apikey",
        "Create Repository AI API Key",
        "Create a new AI-specific API key for a repository.",
    ),
    "getRepoAiApiKeys": (
        "get__repo_{repoId}_ai_apikey",
        "List Repository AI API Keys",
        "Retrieve all AI API keys associated with a specific repository.",
    ),
    "updateRepoAiApiKey": (
        "put__repo_{repoId}_ai_apikey_{apikeyId}",
        "Update Repository AI API Key",
        "Update the properties of an existing AI API key.",
    ),
    "deleteRepoAiApiKey": (
        "delete__repo_{repoId}_ai_apikey",
        "Delete Repository AI API Key",
        "Permanently delete an AI API key from a repository.",
    ),
    "registerNode": (
        "post__register",
        "Register Bridge Node",
        "Register a new bridge node with the Flashback platform",
    ),
    "unregisterNode": (
        "post__unregister",
        "Unregister Bridge Node",
        "Remove a bridge node from the Flashback platform",
    ),
    "getSystemEvents": (
        "post__systemevent",
        "Query System Events",
        "Query system events from the SystemEvent table",
    ),
}
AI_OPERATIONS = {
    "createRepoAiApiKey",
    "getRepoAiApiKeys",
    "updateRepoAiApiKey",
    "deleteRepoAiApiKey",
}
CLIENT_NODE_STATUSES = {"ONLINE", "OFFLINE", "DISCONNECTED"}


def operations() -> dict[str, dict[str, Any]]:
    return {
        op["operationId"]: op
        for item in load_spec()["paths"].values()
        for method, op in item.items()
        if method in ("get", "post", "put", "delete")
    }


def examples(node: Any) -> Iterator[Any]:
    """Every example value in a part of the contract (``example`` and ``examples.*.value``)."""
    if isinstance(node, dict):
        if "example" in node:
            yield node["example"]
        named = node.get("examples")
        if isinstance(named, dict):
            yield from (e["value"] for e in named.values() if isinstance(e, dict) and "value" in e)
        for value in node.values():
            yield from examples(value)
    elif isinstance(node, list):
        for value in node:
            yield from examples(value)


def values_of(node: Any, field: str) -> Iterator[Any]:
    """Every value of ``field`` anywhere inside an example."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == field:
                yield value
            yield from values_of(value, field)
    elif isinstance(node, list):
        for value in node:
            yield from values_of(value, field)


def key_pattern() -> re.Pattern[str]:
    return re.compile(load_spec()["components"]["schemas"]["AiApiKeyAccessKey"]["x-key-pattern"])


def test_the_contract_covers_the_documented_operations() -> None:
    assert set(operations()) == set(DOCUMENTED)


@pytest.mark.parametrize("operation_id", DOCUMENTED)
def test_summaries_and_descriptions_keep_the_documentations_words(operation_id: str) -> None:
    page, title, opening = DOCUMENTED[operation_id]
    operation = operations()[operation_id]

    assert operation["summary"] == title, page
    description = " ".join(operation["description"].split())
    if operation_id in AI_OPERATIONS:
        assert description.startswith("TEST ENVIRONMENT ONLY"), page
        description = description.split("production. ", 1)[1]
    assert description.startswith(opening), page


def test_the_documented_key_example_fits_the_stated_format() -> None:
    assert key_pattern().fullmatch("FB_AI_abc123def456")


def test_every_ai_key_example_in_the_contract_fits_the_stated_format() -> None:
    keys = [k for e in examples(load_spec()["paths"]) for k in values_of(e, "key")]

    assert "FB_AI_abc123def456" in keys  # the documentation's own example is shown
    assert keys and all(isinstance(k, str) and key_pattern().fullmatch(k) for k in keys), keys


def test_every_ai_key_of_the_demo_data_fits_the_stated_format() -> None:
    keys = [k["key"] for k in read_seed(None)["aiApiKeys"]]

    assert keys and all(key_pattern().fullmatch(k) for k in keys), keys


def test_generated_keys_fit_the_stated_format(client: TestClient) -> None:
    created = client.post(
        "/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER), json={"name": "n", "aiType": "AWS"}
    ).json()

    assert key_pattern().fullmatch(created["key"])
    assert key_pattern().fullmatch(new_ai_api_key())


def test_node_status_is_a_free_string_shown_with_the_clients_values() -> None:
    spec = load_spec()
    status = spec["components"]["schemas"]["RegisterNodeRequest"]["properties"]["status"]
    shown = [s for e in examples(spec["paths"]["/register"]) for s in values_of(e, "status")]
    demo = read_seed(None)

    assert status["type"] == "string" and "enum" not in status
    assert shown and set(shown) <= CLIENT_NODE_STATUSES
    assert {n["status"] for n in demo.get("nodes", [])} <= CLIENT_NODE_STATUSES


def test_node_timestamps_are_declared_in_both_forms() -> None:
    timestamp = load_spec()["components"]["schemas"]["NodeTimestamp"]
    shown = [
        t for e in examples(load_spec()["paths"]["/register"]) for t in values_of(e, "timestamp")
    ]

    assert [form["type"] for form in timestamp["oneOf"]] == ["string", "integer"]
    assert timestamp["oneOf"][0]["format"] == "date-time"
    assert {type(t) for t in shown} == {str, int}
