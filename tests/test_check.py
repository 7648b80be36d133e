"""`flashback-contract check`: the conformance harness against live servers on loopback."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from connexion import FlaskApp

from flashback_contract import cli
from flashback_contract.conformance.check import (
    EXIT_COULD_NOT_RUN,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CheckOptions,
    check,
)
from flashback_contract.contract import load_spec
from flashback_contract.domain import Role
from flashback_contract.mock.auth import Authenticator, Principal
from flashback_contract.mock.handlers import organization_keys, repo_ai_api_keys
from tests.conftest import OWNER
from tests.servers import serve_in_thread

pytestmark = pytest.mark.slow

FAILURE_LINE = re.compile(
    r"^\d+\. (?P<operation>[A-Z]+ \S+): (?P<check>\w+) \((?P<phase>\w+) phase\)$"
)


class RecordingApp:
    """ASGI wrapper that remembers every request line it serves."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def run_check(**options: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = check(CheckOptions(**options), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def failures(output: str) -> set[tuple[str, str]]:
    return {
        (m["operation"], m["check"])
        for line in output.splitlines()
        if (m := FAILURE_LINE.match(line.strip()))
    }


def per_operation(output: str) -> dict[str, tuple[int, int, str]]:
    """The summary table: operation -> (cases, failures, status codes)."""
    rows = {}
    table = output.split("Per operation:")[1].split("\n\n")[0].splitlines()[2:]
    for row in table:
        match = re.match(r"^\s+([A-Z]+ \S+)\s+(\d+)\s+(\d+)\s*(.*)$", row)
        assert match, row
        rows[match[1]] = (int(match[2]), int(match[3]), match[4])
    return rows


@pytest.fixture
def mock_url(make_app: Callable[..., FlaskApp]) -> Iterator[str]:
    with serve_in_thread(make_app(validate_responses=False)) as url:
        yield url


def test_a_destructive_run_against_the_mock_passes_and_exercises_everything(
    mock_url: str, tmp_path: Path
) -> None:
    junit = tmp_path / "report.xml"

    status, output, err = run_check(
        base_url=mock_url, token=OWNER, allow_destructive=True, seed=11, junit=junit
    )

    assert status == EXIT_OK, output + err
    assert "DESTRUCTIVE RUN" in output
    assert "Seed: 11" in output and "(seed 11)" in output
    rows = per_operation(output)
    declared = {
        f"{method.upper()} {path}"
        for path, item in load_spec()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete")
    }
    assert declared <= set(rows)
    for label in declared:
        cases, failed, _ = rows[label]
        assert cases > 0 and failed == 0, (label, rows[label])
    # The stateful chains ran on real resources: created keys were updated and deleted.
    assert "200x" in rows["PUT /repo/{repoId}/ai/apikey/{apikeyId}"][2]
    assert "200x" in rows["DELETE /repo/{repoId}/ai/apikey/{apikeyId}"][2]
    assert "200x" in rows["DELETE /organization/{idOrg}/key/{idKey}"][2]
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert {case.get("name") for case in suite.iter("testcase")} == declared


@pytest.fixture
def broken_url(monkeypatch: pytest.MonkeyPatch, make_app: Callable[..., FlaskApp]) -> Iterator[str]:
    """A server that breaks the contract five ways, one operation each (tests only)."""

    def wrong_field_type(repoId: str, token_info: dict[str, Any]) -> Any:
        return {"success": True, "apiKeys": "none"}, 200

    def undocumented_status(idOrg: str, idKey: str, token_info: dict[str, Any]) -> Any:
        return {"success": True, "message": "accepted"}, 202

    def wrong_content_type(idOrg: str, token_info: dict[str, Any]) -> Any:
        return flask.Response("keys: none", status=200, mimetype="text/plain")

    def server_error(repoId: str, apikeyId: str, body: Any, token_info: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    def accept_any_token(self: Authenticator, token: str) -> dict[str, Any] | None:
        principal = Principal("user-acme-owner", "org-acme", Role.OWNER)
        return {"sub": principal.user_id, "principal": principal}

    monkeypatch.setattr(repo_ai_api_keys, "getRepoAiApiKeys", wrong_field_type)
    monkeypatch.setattr(organization_keys, "deleteOrgKey", undocumented_status)
    monkeypatch.setattr(organization_keys, "getOrgKeys", wrong_content_type)
    monkeypatch.setattr(repo_ai_api_keys, "updateRepoAiApiKey", server_error)
    monkeypatch.setattr(Authenticator, "bearer_info", accept_any_token)
    with serve_in_thread(make_app(validate_responses=False)) as url:
        yield url


def test_every_kind_of_violation_is_caught_and_named_with_its_operation(
    broken_url: str, tmp_path: Path
) -> None:
    junit = tmp_path / "report.xml"

    status, output, _ = run_check(
        base_url=broken_url,
        token=OWNER,
        allow_destructive=True,
        seed=5,
        max_examples=10,
        junit=junit,
    )

    assert status == EXIT_FAILED
    found = failures(output)
    assert ("GET /repo/{repoId}/ai/apikey", "response_schema_conformance") in found, output
    assert ("DELETE /organization/{idOrg}/key/{idKey}", "status_code_conformance") in found, output
    assert ("GET /organization/{idOrg}/key", "content_type_conformance") in found, output
    assert ("PUT /repo/{repoId}/ai/apikey/{apikeyId}", "not_a_server_error") in found, output
    assert any(check == "ignored_auth" for _, check in found), output
    assert "Reproduce with:" in output and "curl -X" in output
    assert re.search(r"^FAILED: \d+ cases, \d+ failed checks", output, re.MULTILINE)
    failed_cases = {
        case.get("name")
        for case in ElementTree.parse(junit).getroot().iter("testcase")
        if case.find("failure") is not None
    }
    assert {
        "GET /repo/{repoId}/ai/apikey",
        "PUT /repo/{repoId}/ai/apikey/{apikeyId}",
    } <= failed_cases


def test_the_read_only_default_never_sends_delete_post_or_put(
    make_app: Callable[..., FlaskApp],
) -> None:
    recorder = RecordingApp(make_app(validate_responses=False))
    with serve_in_thread(recorder) as url:
        status, output, err = run_check(base_url=url, token=OWNER, seed=3, max_examples=15)

    assert status == EXIT_OK, output + err
    assert "Read-only run" in output
    methods = {method for method, _ in recorder.requests}
    assert methods and methods <= {"GET", "HEAD", "OPTIONS", "TRACE"}, methods
    assert ("GET", "/organization/org-acme/key") in recorder.requests


def test_org_and_repo_pin_the_path_ids_to_the_sandbox(make_app: Callable[..., FlaskApp]) -> None:
    recorder = RecordingApp(make_app(validate_responses=False))
    with serve_in_thread(recorder) as url:
        status, output, _ = run_check(
            base_url=url,
            token=OWNER,
            org="org-acme",
            repo="repo-acme-main",
            seed=4,
            max_examples=10,
        )

    assert status == EXIT_OK, output
    # Besides the reachability check (/) and schemathesis' capability probe.
    paths = {
        path
        for _, path in recorder.requests
        if path != "/" and not path.startswith("/schemathesis-probe")
    }
    assert paths and paths <= {"/organization/org-acme/key", "/repo/repo-acme-main/ai/apikey"}


def test_include_and_exclude_select_operations(mock_url: str) -> None:
    status, output, _ = run_check(
        base_url=mock_url, token=OWNER, include=["getOrgKeys", "getRepoAiApiKeys"],
        exclude=["getRepoAiApiKeys"], seed=2, max_examples=5,
    )  # fmt: skip

    assert status == EXIT_OK
    assert "Operations: getOrgKeys\n" in output
    assert set(per_operation(output)) <= {
        "GET /organization/{idOrg}/key",
        "TRACE /organization/{idOrg}/key",
    }


def test_an_unknown_operation_id_is_a_usage_error(mock_url: str) -> None:
    status, _, err = run_check(base_url=mock_url, include=["deleteEverything"])

    assert status == EXIT_USAGE
    assert "unknown operationId: deleteEverything" in err


def test_destructive_runs_off_loopback_need_a_sandbox_and_send_nothing_without_one() -> None:
    # `.invalid` never resolves: the refusal comes before any request could be made.
    status, output, err = run_check(
        base_url="https://backend.flashback.invalid", allow_destructive=True
    )

    assert status == EXIT_USAGE
    assert "needs --org and --repo" in err
    assert output == ""


def test_an_unreachable_server_could_not_be_checked(tmp_path: Path) -> None:
    with serve_in_thread(RecordingApp(None)) as url:
        pass  # the port was free a moment ago and nobody listens now

    status, _, err = run_check(base_url=url, request_timeout=2)

    assert status == EXIT_COULD_NOT_RUN
    assert "could not run: cannot reach" in err


def test_an_invalid_contract_could_not_be_checked(mock_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: 3.0.3\ninfo: {title: x}\npaths: {}\n")

    status, _, err = run_check(base_url=mock_url, spec=str(bad))

    assert status == EXIT_COULD_NOT_RUN
    assert "is not valid OpenAPI" in err


def test_the_command_line_takes_the_token_from_the_environment(
    mock_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLASHBACK_TOKEN", OWNER)

    status = cli.main(
        [
            "check",
            "--base-url",
            mock_url,
            "--include",
            "getOrgKeys",
            "--seed",
            "1",
            "--max-examples",
            "5",
        ]
    )

    output = capsys.readouterr().out
    assert status == EXIT_OK, output
    # Authenticated: the owner's own organization answered 200 somewhere in the run.
    assert "200x" in per_operation(output)["GET /organization/{idOrg}/key"][2]
