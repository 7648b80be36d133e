"""openapi.yaml itself: valid, complete, and the one the package ships."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from flashback_contract.contract import allowed_methods, load_spec, spec_path
from flashback_contract.mock import policy

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = [
    (path, method, operation)
    for path, item in load_spec()["paths"].items()
    for method, operation in item.items()
    if isinstance(operation, dict) and "responses" in operation
]


def test_openapi_yaml_is_a_valid_openapi_3_0_3_document() -> None:
    spec_dict, base_uri = read_from_filename(str(ROOT / "openapi.yaml"))

    validate(spec_dict, base_uri=base_uri)
    assert spec_dict["openapi"] == "3.0.3"


def test_the_seed_operations_keep_the_documented_names_and_statuses() -> None:
    spec = load_spec()
    delete_all = spec["paths"]["/organization/{idOrg}/key"]["delete"]
    delete_ai = spec["paths"]["/repo/{repoId}/ai/apikey/{apikeyId}"]["delete"]

    assert (delete_all["operationId"], delete_all["summary"]) == (
        "deleteOrgKeys",
        "Delete Organization Keys",
    )
    assert (delete_ai["operationId"], delete_ai["summary"]) == (
        "deleteRepoAiApiKey",
        "Delete Repository AI API Key",
    )
    assert {"200", "403", "500"} <= set(delete_all["responses"])
    assert {"200", "403", "404", "500"} <= set(delete_ai["responses"])


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_every_operation_declares_its_errors_with_the_error_envelope(
    path: str, method: str, operation: dict[str, object]
) -> None:
    spec = load_spec()
    responses = operation["responses"]
    assert isinstance(responses, dict)
    secured = operation.get("security", spec["security"]) != []
    expected = {"400", "500"} | ({"401"} if secured else set())
    assert expected <= set(responses), f"{method.upper()} {path}"
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            if "$ref" in response:
                response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            ref = response["content"]["application/json"]["schema"]["$ref"]
            schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
            # The envelope: success (always false) and message, whatever else a body adds.
            success = {
                k: v for k, v in schema["properties"]["success"].items() if k != "description"
            }
            assert success == {"type": "boolean", "enum": [False]}, (method, path, status)
            assert schema["properties"]["message"]["type"] == "string", (method, path, status)


@pytest.mark.parametrize(
    "message",
    [
        policy.ORG_KEYS_FORBIDDEN,
        policy.ORG_KEY_NOT_FOUND,
        policy.REPOSITORY_FORBIDDEN,
        policy.AI_API_KEY_NOT_FOUND,
        policy.orgkeys_quota_reached(5),
    ],
)
def test_the_messages_the_server_sends_are_the_ones_the_contract_shows(message: str) -> None:
    assert message in (ROOT / "openapi.yaml").read_text("utf-8")


def test_allowed_methods_come_from_the_contract() -> None:
    assert allowed_methods("/organization/x/key") == ("DELETE", "GET", "POST")
    assert allowed_methods("/repo/r/ai/apikey/k") == ("DELETE", "PUT")
    assert allowed_methods("/nowhere") == ()


def test_the_wheel_ships_the_contract_and_the_demo_fixture(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("flashback_contract-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    assert "flashback_contract/openapi.yaml" in names
    assert "flashback_contract/mock/demo/demo.yaml" in names
    assert "flashback_contract/mock/mock-control.yaml" in names
    assert "flashback_contract/mock/seed.schema.json" in names
    assert "flashback_contract/conformance/conformance.toml" in names
    shipped = zipfile.ZipFile(wheel).read("flashback_contract/openapi.yaml")
    assert shipped == (ROOT / "openapi.yaml").read_bytes()
    assert spec_path().read_bytes() == shipped
