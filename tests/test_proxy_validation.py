"""The proxy's checks and redaction, without a network: openapi-core over the contract."""

from __future__ import annotations

import json
from typing import Any

import pytest
from werkzeug.datastructures import Headers

from flashback_contract.conformance.redact import curl_line, redact_body, redact_query
from flashback_contract.conformance.validation import ContractValidator, Exchange
from flashback_contract.contract import load_spec

AUTH = [("Authorization", "Bearer t")]
JSON = [("Content-Type", "application/json")]


@pytest.fixture(scope="module")
def validator() -> ContractValidator:
    return ContractValidator(load_spec())


def request_shorts(validator: ContractValidator, exchange: Exchange) -> list[str]:
    operation, violations = validator.operation(exchange)
    if operation is not None:
        violations += validator.request_violations(exchange, operation)
    return [v.short() for v in violations]


def response_shorts(
    validator: ContractValidator, exchange: Exchange, status: int, body: Any, media: str
) -> list[str]:
    operation, _ = validator.operation(exchange)
    assert operation is not None
    data = json.dumps(body).encode() if media == "application/json" else str(body).encode()
    headers = Headers({"Content-Type": media})
    return [
        v.short() for v in validator.response_violations(exchange, operation, status, headers, data)
    ]


def test_a_path_or_method_outside_the_contract_is_named(validator: ContractValidator) -> None:
    assert request_shorts(validator, Exchange("GET", "/nowhere", headers=AUTH)) == [
        "request: unknown path (not in the contract)"
    ]
    assert request_shorts(validator, Exchange("PATCH", "/organization/org-acme/key")) == [
        "request: undocumented method (PATCH not documented)"
    ]


def test_a_request_without_credentials_still_has_its_body_checked(
    validator: ContractValidator,
) -> None:
    exchange = Exchange("POST", "/repo/repo-x/ai/apikey", headers=JSON, body=b'{"name": ""}')

    assert sorted(request_shorts(validator, exchange)) == [
        "request /aiType: required field missing",
        "request /name: schema (minLength 1)",
        "request: missing security (no credentials)",
    ]


def test_an_undocumented_request_field_and_a_bad_path_parameter_are_named(
    validator: ContractValidator,
) -> None:
    body = b'{"name": "n", "aiType": "OPENAI", "owner": "me"}'
    exchange = Exchange("POST", "/repo/repo x/ai/apikey", headers=AUTH + JSON, body=body)

    assert request_shorts(validator, exchange) == [
        "request path repoId: invalid parameter (pattern not satisfied)",
        "request /owner: undocumented field",
    ]


def test_a_conforming_response_has_no_violation(validator: ContractValidator) -> None:
    exchange = Exchange("GET", "/organization/org-acme/key", headers=AUTH)
    body = {
        "success": True,
        "data": [
            {
                "id": "k",
                "orgId": "org-acme",
                "publicKey": "pem",
                "createdAt": "2026-01-01T09:00:00Z",
                "nodeKeys": [{"keyId": "k", "nodeId": "192.0.2.1"}],
            }
        ],
    }

    assert response_shorts(validator, exchange, 200, body, "application/json") == []


def test_response_drift_is_named_with_its_json_pointer(validator: ContractValidator) -> None:
    exchange = Exchange("GET", "/organization/org-acme/key", headers=AUTH)
    body = {
        "success": "yes",
        "data": [
            {
                "id": "k",
                "orgId": "org-acme",
                "publicKey": "pem",
                "createdAt": "yesterday",
                "nodeKeys": [{"keyId": "k", "nodeId": "192.0.2.1", "since": 1}],
            }
        ],
    }

    assert sorted(response_shorts(validator, exchange, 200, body, "application/json")) == [
        "response 200 /data/0/createdAt: wrong format (expected date-time)",
        "response 200 /data/0/nodeKeys/0/since: undocumented field",
        "response 200 /success: wrong type (expected boolean)",
    ]


def test_a_raw_pem_download_is_a_documented_answer(validator: ContractValidator) -> None:
    exchange = Exchange("POST", "/organization/org-acme/key", headers=AUTH)
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"

    assert response_shorts(validator, exchange, 200, pem, "application/x-pem-file") == []


def test_the_declared_fields_of_a_response_come_from_the_contract(
    validator: ContractValidator,
) -> None:
    operation, _ = validator.operation(Exchange("GET", "/repo/r/ai/apikey"))
    assert operation is not None

    assert validator.declared_fields(operation, 200, "application/json") == {
        "/success",
        "/apiKeys",
        *(f"/apiKeys/*/{f}" for f in ("id", "name", "repoId", "key", "aiType")),
        "/apiKeys/*/createdAt",
        "/apiKeys/*/deletedAt",
    }


def test_reports_never_show_credentials_secrets_or_private_keys() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecret\n-----END RSA PRIVATE KEY-----\n"
    body = json.dumps({"id": "k", "secret": "s3cr3t", "nested": {"privateKey": "x"}, "pem": pem})

    shown = redact_body(body.encode())
    line = curl_line(
        "POST",
        "http://api/x",
        [("Authorization", "Bearer tok3n"), ("Cookie", "sid=c00kie"), ("Accept", "*/*")],
        body.encode(),
    )

    for secret in ("s3cr3t", "MIIEsecret", "tok3n", "c00kie", '"x"'):
        assert secret not in shown + line
    assert '"id": "k"' in shown
    assert "[PEM redacted]" in shown
    assert "Authorization: [Filtered]" in line
    assert "Accept: */*" in line
    assert redact_query("token=abc&skip=2") == "token=%5BFiltered%5D&skip=2"
    assert redact_body(pem.encode()) == "[PEM redacted]\n"
