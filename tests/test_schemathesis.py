"""Schemathesis over the ASGI app: every operation, every phase, every default check.

The seeds are fixed so a failure reproduces; set FLASHBACK_SCHEMATHESIS_SEEDS (comma
separated) and FLASHBACK_SCHEMATHESIS_MAX_EXAMPLES to explore further.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from connexion import FlaskApp
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from flashback_contract.handlers import organization_keys, repo_ai_api_keys
from flashback_contract.spec import conformance_settings, load_spec
from tests.conftest import OWNER

pytestmark = pytest.mark.slow

SEEDS = [int(s) for s in os.environ.get("FLASHBACK_SCHEMATHESIS_SEEDS", "20261124,7").split(",")]
MAX_EXAMPLES = int(os.environ.get("FLASHBACK_SCHEMATHESIS_MAX_EXAMPLES", "40"))


@dataclass
class Finding:
    phase: str
    operation: str
    check: str
    title: str
    reproduction: str

    def __str__(self) -> str:
        return f"[{self.phase}] {self.operation}: {self.check} ({self.title})\n{self.reproduction}"


@dataclass
class Run:
    seed: int
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cases: Counter[tuple[str, str]] = field(default_factory=Counter)
    phases: dict[str, str] = field(default_factory=dict)
    statuses: defaultdict[tuple[str, str], set[int]] = field(
        default_factory=lambda: defaultdict(set)
    )

    def report(self) -> str:
        lines = [f"seed {self.seed}: {len(self.findings)} failures, {len(self.errors)} errors"]
        lines += [str(f) for f in self.findings] + self.errors
        return "\n".join(lines)


def conformance_config(
    seed: int,
    max_examples: int,
    phases: list[str] | None = None,
    pinned: dict[str, str] | None = None,
) -> str:
    text = f'seed = {seed}\nheaders = {{ Authorization = "Bearer {OWNER}" }}\n'
    if pinned:
        text += "[parameters]\n" + "".join(f'"path.{k}" = "{v}"\n' for k, v in pinned.items())
    text += f"[generation]\nmax-examples = {max_examples}\n"
    if phases is not None:
        text += "[phases]\n" + "".join(
            f"{name}.enabled = {'true' if name in phases else 'false'}\n"
            for name in ("examples", "coverage", "fuzzing", "stateful")
        )
    return text + conformance_settings()


def run_schemathesis(
    app: FlaskApp,
    seed: int,
    max_examples: int,
    phases: list[str] | None = None,
    pinned: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> Run:
    """Run the schemathesis engine against the app in-process and collect what it reports."""
    config = SchemathesisConfig.from_str(conformance_config(seed, max_examples, phases, pinned))
    schema = schemathesis.openapi.from_dict(spec or load_spec(), config=config)
    schema.app = app
    run = Run(seed=seed)
    logging.disable(logging.ERROR)  # the app logs every refused request; keep output readable
    try:
        for event in from_schema(schema).execute():
            _collect(run, event)
    finally:
        logging.disable(logging.NOTSET)
    return run


def _collect(run: Run, event: Any) -> None:
    if isinstance(event, events.ScenarioFinished):
        for case_node in event.recorder.cases.values():
            case = case_node.value
            run.cases[(event.phase.value, f"{case.method.upper()} {case.path}")] += 1
        for case_id, interaction in event.recorder.interactions.items():
            if interaction.response is not None and case_id in event.recorder.cases:
                case = event.recorder.cases[case_id].value
                operation = f"{case.method.upper()} {case.path}"
                run.statuses[(event.phase.value, operation)].add(interaction.response.status_code)
        if event.status in (Status.FAILURE, Status.ERROR):
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        run.findings.append(
                            Finding(
                                phase=event.phase.value,
                                operation=check.failure_info.failure.operation,
                                check=check.name,
                                title=check.failure_info.failure.title,
                                reproduction=check.failure_info.code_sample,
                            )
                        )
    elif isinstance(event, events.NonFatalError):
        run.errors.append(f"error in {event.label}: {event.info.format()}")
    elif isinstance(event, events.FatalError):
        run.errors.append(f"fatal: {event.exception!r}")
    elif isinstance(event, events.PhaseFinished):
        run.phases[event.phase.name.value] = event.status.value


def declared_operations() -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, item in load_spec()["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }


@pytest.fixture
def owner_app(make_app: Callable[..., FlaskApp]) -> FlaskApp:
    return make_app()


@pytest.mark.parametrize("seed", SEEDS)
def test_contract_holds_for_every_operation_in_every_phase(owner_app: FlaskApp, seed: int) -> None:
    run = run_schemathesis(owner_app, seed, MAX_EXAMPLES)

    assert not run.findings and not run.errors, run.report()
    assert run.phases == {
        **run.phases,
        "examples": "success",
        "coverage": "success",
        "fuzzing": "success",
        "stateful": "success",
    }, run.phases
    for phase in ("examples", "coverage", "fuzzing"):
        exercised = {op for (ph, op) in run.cases if ph == phase}
        assert declared_operations() <= exercised, (
            f"{phase} missed {declared_operations() - exercised}"
        )


def linked_tags() -> list[str]:
    """Tags whose operations are chained by OpenAPI links (create -> list/update/delete)."""
    tags: set[str] = set()
    for item in load_spec()["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and any(
                "links" in response for response in operation.get("responses", {}).values()
            ):
                tags.update(operation.get("tags", []))
    return sorted(tags)


def linked_operations(spec: dict[str, Any]) -> set[str]:
    """Operations that start a link or are reached through one."""
    labels: dict[str, str] = {}
    linked: set[str] = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                label = f"{method.upper()} {path}"
                labels[operation["operationId"]] = label
                for response in operation["responses"].values():
                    for link in response.get("links", {}).values():
                        linked.update({label, link["operationId"]})
    return {labels.get(name, name) for name in linked}


def spec_for_tag(tag: str) -> dict[str, Any]:
    """The contract reduced to one tag's operations.

    Schemathesis starts stateful chains only from operations it expects to succeed with
    random input; with every operation present it prefers POST /organization/{idOrg}/key
    and never starts the AI key chain. One resource at a time, each chain gets its turn.
    """
    spec = copy.deepcopy(load_spec())
    paths = {}
    for template, item in spec["paths"].items():
        kept = {
            key: value
            for key, value in item.items()
            if not (isinstance(value, dict) and "responses" in value)
            or tag in value.get("tags", [])
        }
        if any(isinstance(v, dict) and "responses" in v for v in kept.values()):
            paths[template] = kept
    spec["paths"] = paths
    return spec


@pytest.mark.parametrize("tag", linked_tags())
def test_stateful_chains_follow_links_to_real_resources(
    make_app: Callable[..., FlaskApp], tag: str
) -> None:
    spec = spec_for_tag(tag)
    # Path ids pinned to the caller's own organization and repository, as `check --org --repo`.
    run = run_schemathesis(
        make_app(),
        SEEDS[0],
        MAX_EXAMPLES,
        phases=["stateful"],
        pinned={"idOrg": "org-acme", "repoId": "repo-acme-main"},
        spec=spec,
    )

    assert not run.findings and not run.errors, run.report()
    assert run.phases["stateful"] == "success", run.phases
    reached = {op for (_, op), codes in run.statuses.items() if any(200 <= c < 300 for c in codes)}
    # Every linked operation answered 2xx inside a chain: created ids were really used.
    chained = linked_operations(spec)
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
    app = make_app(validate_responses=False)

    run = run_schemathesis(app, SEEDS[0], 5, phases=["examples"])

    failing = {(f.operation, f.check) for f in run.findings}
    assert ("GET /repo/{repoId}/ai/apikey", "response_schema_conformance") in failing, run.report()


def test_schemathesis_fails_on_an_undocumented_status(
    monkeypatch: pytest.MonkeyPatch, make_app: Callable[..., FlaskApp]
) -> None:
    monkeypatch.setattr(organization_keys, "deleteOrgKey", _undocumented_status)
    app = make_app(validate_responses=False)

    run = run_schemathesis(app, SEEDS[0], 5, phases=["examples"])

    failing = {(f.operation, f.check) for f in run.findings}
    assert ("DELETE /organization/{idOrg}/key/{idKey}", "status_code_conformance") in failing, (
        run.report()
    )


def test_the_contract_run_reports_nothing_for_the_real_handlers(
    make_app: Callable[..., FlaskApp],
) -> None:
    """The control for the two tests above: same phase, same seed, unbroken handlers."""
    run = run_schemathesis(make_app(validate_responses=False), SEEDS[0], 5, phases=["examples"])
    assert not run.findings, run.report()
