"""Run schemathesis against the contract and collect what a person needs to act on.

Schemathesis generates the requests and runs its checks; this module only configures it
(from the contract and ``conformance.toml``) and gathers its events per operation.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema


def conformance_settings() -> str:
    """Schemathesis settings the contract implies (``conformance.toml``, shipped beside this)."""
    return resources.files(__package__).joinpath("conformance.toml").read_text("utf-8")


HTTP_METHODS = ("get", "put", "post", "delete", "patch")
PHASES = ("examples", "coverage", "fuzzing", "stateful")


@dataclass(frozen=True)
class Operation:
    """One operation of the contract."""

    operation_id: str
    method: str
    path: str
    tags: tuple[str, ...]
    changes_state: bool

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"


def operations(spec: Mapping[str, Any]) -> list[Operation]:
    """Every operation of a contract, in document order.

    DELETE, POST and PUT count as changing state, even a query sent with POST: the
    read-only default of ``check`` must be able to promise that it sends none of them.
    """
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS and isinstance(operation, dict):
                found.append(
                    Operation(
                        operation_id=operation.get("operationId", f"{method} {path}"),
                        method=method,
                        path=path,
                        tags=tuple(operation.get("tags", ())),
                        changes_state=method in ("delete", "post", "put"),
                    )
                )
    return found


def restrict(spec: Mapping[str, Any], keep: Iterable[str]) -> dict[str, Any]:
    """The contract with only the operations whose operationId is in ``keep``.

    Links to operations that are gone are dropped too, so schemathesis does not
    report them missing.
    """
    kept = set(keep)
    result = copy.deepcopy(dict(spec))
    paths: dict[str, Any] = {}
    for path, item in result["paths"].items():
        methods = {
            m: op
            for m, op in item.items()
            if m in HTTP_METHODS and isinstance(op, dict) and op.get("operationId") in kept
        }
        if not methods:
            continue
        for op in methods.values():
            for response in op.get("responses", {}).values():
                links = response.get("links")
                if links:
                    response["links"] = {
                        name: link for name, link in links.items() if link["operationId"] in kept
                    }
                    if not response["links"]:
                        del response["links"]
        paths[path] = {k: v for k, v in item.items() if k not in HTTP_METHODS} | methods
    result["paths"] = paths
    return result


def linked_groups(spec: Mapping[str, Any]) -> list[set[str]]:
    """Sets of operationIds joined by OpenAPI links, one per tag (create -> list/update/delete)."""
    by_id = {op.operation_id: op for op in operations(spec)}
    groups: dict[str, set[str]] = defaultdict(set)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS or not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                for link in response.get("links", {}).values():
                    tag = (operation.get("tags") or [path])[0]
                    groups[tag].update({operation["operationId"], link["operationId"]})
    return [ids for _, ids in sorted(groups.items()) if ids <= by_id.keys()]


@dataclass
class Finding:
    """A failed check: what a person needs to reproduce and fix it."""

    phase: str
    operation: str
    check: str
    title: str
    message: str
    reproduction: str

    def __str__(self) -> str:
        return f"[{self.phase}] {self.operation}: {self.check} ({self.title})\n{self.reproduction}"


@dataclass
class RunResult:
    """What one schemathesis run reported."""

    seed: int
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cases: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: defaultdict[tuple[str, str], Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    phases: dict[str, str] = field(default_factory=dict)
    unreachable: bool = False

    def report(self) -> str:
        lines = [f"seed {self.seed}: {len(self.findings)} failures, {len(self.errors)} errors"]
        return "\n".join(lines + [str(f) for f in self.findings] + self.errors)

    def merge(self, other: RunResult) -> None:
        self.findings += other.findings
        self.errors += other.errors
        self.cases.update(other.cases)
        for key, codes in other.statuses.items():
            self.statuses[key].update(codes)
        for phase, status in other.phases.items():
            if status != "skip" or phase not in self.phases:
                self.phases[phase] = status
        self.unreachable = self.unreachable or other.unreachable


def config_text(
    *,
    seed: int,
    max_examples: int,
    phases: Iterable[str] = PHASES,
    token: str | None = None,
    pinned: Mapping[str, str] | None = None,
    base_url: str | None = None,
    workers: int | None = None,
    request_timeout: float | None = None,
    unexpected_methods: Iterable[str] | None = None,
) -> str:
    """A schemathesis configuration (TOML): run settings, then the contract's own."""
    lines = [f"seed = {seed}"]
    if base_url is not None:
        lines.append(f"base-url = {json.dumps(base_url)}")
    if workers is not None:
        lines.append(f"workers = {workers}")
    if request_timeout is not None:
        lines.append(f"request-timeout = {request_timeout}")
    if token is not None:
        lines.append(f"headers = {{ Authorization = {json.dumps('Bearer ' + token)} }}")
    lines += ["[generation]", f"max-examples = {max_examples}"]
    if pinned:
        lines.append("[parameters]")
        lines += [f"{json.dumps('path.' + k)} = {json.dumps(v)}" for k, v in pinned.items()]
    lines.append("[phases]")
    wanted = set(phases)
    lines += [f"{name}.enabled = {'true' if name in wanted else 'false'}" for name in PHASES]
    if unexpected_methods is not None:
        lines.append(f"coverage.unexpected-methods = {json.dumps(sorted(unexpected_methods))}")
    return "\n".join(lines) + "\n" + conformance_settings()


def run(spec: Mapping[str, Any], config: str, app: Any = None) -> RunResult:
    """Run schemathesis' engine (over HTTP, or in-process when ``app`` is given)."""
    parsed = SchemathesisConfig.from_str(config)
    schema = schemathesis.openapi.from_dict(dict(spec), config=parsed)
    if app is not None:
        schema.app = app
    result = RunResult(seed=parsed.seed)
    # The in-process app logs every refused request; keep a person's output readable.
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        for event in from_schema(schema).execute():
            _collect(result, event)
    finally:
        logging.disable(previous)
    return result


def _collect(result: RunResult, event: Any) -> None:
    if isinstance(event, events.ScenarioFinished):
        phase = event.phase.value
        recorder = event.recorder
        for case_node in recorder.cases.values():
            case = case_node.value
            result.cases[(phase, f"{case.method.upper()} {case.path}")] += 1
        for case_id, interaction in recorder.interactions.items():
            if interaction.response is not None and case_id in recorder.cases:
                case = recorder.cases[case_id].value
                label = f"{case.method.upper()} {case.path}"
                result.statuses[(phase, label)][interaction.response.status_code] += 1
        if event.status in (Status.FAILURE, Status.ERROR):
            for checks in recorder.checks.values():
                for check in checks:
                    info = check.failure_info
                    if info is not None:
                        result.findings.append(
                            Finding(
                                phase=phase,
                                operation=info.failure.operation,
                                check=check.name,
                                title=info.failure.title,
                                message=info.failure.message or "",
                                reproduction=info.code_sample,
                            )
                        )
    elif isinstance(event, events.NonFatalError):
        result.errors.append(f"error in {event.label}: {event.info.format()}")
    elif isinstance(event, events.FatalError):
        result.errors.append(f"fatal: {event.exception!r}")
    elif isinstance(event, events.PhaseFinished):
        result.phases[event.phase.name.value] = event.status.value
    elif isinstance(event, events.EngineFinished):
        result.unreachable = event.stop_reason.value == "server_unavailable"
