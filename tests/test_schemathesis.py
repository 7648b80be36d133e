"""Schemathesis over the ASGI app: every operation, every phase, every default check.

The seeds are fixed so a failure reproduces; set FLASHBACK_SCHEMATHESIS_SEEDS (comma
separated) and FLASHBACK_SCHEMATHESIS_MAX_EXAMPLES to explore further.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from connexion import FlaskApp

from flashback_contract.conformance import runner as conformance
from flashback_contract.contract import load_spec
from flashback_contract.mock.handlers import organization_keys, repo_ai_api_keys
from tests.conftest import OWNER

pytestmark = pytest.mark.slow

SEEDS = [int(s) for s in os.environ.get("FLASHBACK_SCHEMATHESIS_SEEDS", "20261124,7").split(",")]
MAX_EXAMPLES = int(os.environ.get("FLASHBACK_SCHEMATHESIS_MAX_EXAMPLES", "40"))
SANDBOX = {"idOrg": "org-acme", "repoId": "repo-acme-main"}


def run_in_process(
    app: FlaskApp,
    seed: int,
    max_examples: int,
    phases: tuple[str, ...] = conformance.PHASES,
    pinned: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> conformance.RunResult:
    config = conformance.config_text(
        seed=seed, max_examples=max_examples, phases=phases, token=OWNER, pinned=pinned
    )
    return conformance.run(spec or load_spec(), config, app=app)


def declared_operations() -> set[str]:
    return {op.label for op in conformance.operations(load_spec())}


@pytest.mark.parametrize("seed", SEEDS)
def test_contract_holds_for_every_operation_in_every_phase(
    make_app: Callable[..., FlaskApp], seed: int
) -> None:
    run = run_in_process(make_app(), seed, MAX_EXAMPLES)

    assert not run.findings and not run.errors, run.report()
    for phase in conformance.PHASES:
        assert run.phases.get(phase) == "success", run.phases
    for phase in ("examples", "coverage", "fuzzing"):
        exercised = {op for (ph, op) in run.cases if ph == phase}
        assert declared_operations() <= exercised, (
            f"{phase} missed {declared_operations() - exercised}"
        )


@pytest.mark.parametrize(
    "group", conformance.linked_groups(load_spec()), ids=lambda g: ",".join(sorted(g))
)
def test_stateful_chains_follow_links_to_real_resources(
    make_app: Callable[..., FlaskApp], group: set[str]
) -> None:
    # Schemathesis starts stateful chains only from operations it expects to succeed with
    # random input; with every operation present it never starts the AI key chain. One
    # linked group at a time, path ids pinned to the caller's sandbox, each chain runs.
    spec = conformance.restrict(load_spec(), group)
    run = run_in_process(make_app(), SEEDS[0], MAX_EXAMPLES, ("stateful",), SANDBOX, spec)

    assert not run.findings and not run.errors, run.report()
    assert run.phases["stateful"] == "success", run.phases
    reached = {op for (_, op), codes in run.statuses.items() if any(200 <= c < 300 for c in codes)}
    chained = {op.label for op in conformance.operations(spec)}
    # Every linked operation answered 2xx inside a chain: created ids were really used.
    assert chained <= reached, f"not reached with 2xx: {chained - reached}"


def _wrong_types(repoId: str, token_info: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return {"success": "yes", "apiKeys": "none"}, 200


def _undocumented_status(idOrg: str, idKey: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    return {"success": True, "message": "gone"}, 202


def test_schemathesis_fails_on_an_undocumented_body(
    monkeypatch: pytest.MonkeyPatch, make_app: Callable[..., FlaskApp]
) -> None:
    monkeypatch.setattr(repo_ai_api_keys, "getRepoAiApiKeys", _wrong_types)
    # Response validation off: the broken body must reach schemathesis as the server sent it.
    run = run_in_process(make_app(validate_responses=False), SEEDS[0], 5, ("examples",))

    failing = {(f.operation, f.check) for f in run.findings}
    assert ("GET /repo/{repoId}/ai/apikey", "response_schema_conformance") in failing, run.report()


def test_schemathesis_fails_on_an_undocumented_status(
    monkeypatch: pytest.MonkeyPatch, make_app: Callable[..., FlaskApp]
) -> None:
    monkeypatch.setattr(organization_keys, "deleteOrgKey", _undocumented_status)
    run = run_in_process(make_app(validate_responses=False), SEEDS[0], 5, ("examples",))

    failing = {(f.operation, f.check) for f in run.findings}
    assert ("DELETE /organization/{idOrg}/key/{idKey}", "status_code_conformance") in failing, (
        run.report()
    )


def test_the_same_run_reports_nothing_for_the_real_handlers(
    make_app: Callable[..., FlaskApp],
) -> None:
    """The control for the two tests above: same phase, same seed, unbroken handlers."""
    run = run_in_process(make_app(validate_responses=False), SEEDS[0], 5, ("examples",))
    assert not run.findings, run.report()
