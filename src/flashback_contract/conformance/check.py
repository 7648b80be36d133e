"""``flashback-contract check``: does a running server keep the contract?

Schemathesis does the generating and the checking (every phase, every default check); this
command adds the contract, authentication, the safety rails for real backends, and a report
a person can act on.
"""

from __future__ import annotations

import ipaddress
import secrets
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from flashback_contract.conformance import runner as conformance
from flashback_contract.contract import spec_path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_RUN = 3

# When only part of the contract is checked, schemathesis sees only that part: it could take
# a method the contract does declare (DELETE on a path where only GET is selected) for an
# undeclared one and send it. Its undeclared-method probe then sends TRACE alone.
PARTIAL_RUN_UNEXPECTED_METHODS = ("trace",)


class CouldNotRun(Exception):
    """The check could not start: unreachable server, unreadable or invalid contract."""


class UsageError(Exception):
    """The options ask for something unsafe or impossible."""


@dataclass
class CheckOptions:
    base_url: str
    spec: str | None = None
    token: str | None = None
    org: str | None = None
    repo: str | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    allow_destructive: bool = False
    seed: int | None = None
    junit: Path | None = None
    max_examples: int = 20
    workers: int = 1
    request_timeout: float = 10.0


def load_contract(source: str | None, timeout: float = 10.0) -> dict[str, Any]:
    """The contract from the package, a file or a URL, validated as OpenAPI."""
    try:
        if source is None:
            text = spec_path().read_text("utf-8")
        elif source.startswith(("http://", "https://")):
            response = httpx.get(source, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
            text = response.text
        else:
            text = Path(source).read_text("utf-8")
        spec = yaml.safe_load(text)
    except (OSError, httpx.HTTPError, yaml.YAMLError) as exc:
        raise CouldNotRun(f"cannot read the contract {source or spec_path()}: {exc}") from exc
    if not isinstance(spec, dict):
        raise CouldNotRun(f"the contract {source} is not an OpenAPI document")
    try:
        validate(spec)
    except OpenAPIValidationError as exc:
        raise CouldNotRun(f"the contract {source} is not valid OpenAPI: {exc.message}") from exc
    return spec


def is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Plan:
    """What a run will send, decided before anything is sent."""

    selected: list[conformance.Operation]
    chains: list[set[str]]
    pinned: dict[str, str]
    stateful_pins: dict[str, str]

    @property
    def destructive(self) -> list[conformance.Operation]:
        return [op for op in self.selected if op.changes_state]


def _parent_examples(spec: Mapping[str, Any]) -> dict[str, str]:
    """Examples of the path ids chains start from (not those links fill from a response)."""
    from_responses = {
        name
        for item in spec["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for response in operation.get("responses", {}).values()
        for link in response.get("links", {}).values()
        for name, expression in link.get("parameters", {}).items()
        if str(expression).startswith("$response")
    }
    return {
        parameter["name"]: str(parameter["example"])
        for parameter in spec.get("components", {}).get("parameters", {}).values()
        if parameter.get("in") == "path"
        and "example" in parameter
        and parameter["name"] not in from_responses
    }


def make_plan(options: CheckOptions, spec: Mapping[str, Any]) -> Plan:
    every = conformance.operations(spec)
    known = {op.operation_id for op in every}
    unknown = sorted((set(options.include) | set(options.exclude)) - known)
    if unknown:
        raise UsageError(
            f"unknown operationId: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    selected = [
        op
        for op in every
        if (not options.include or op.operation_id in options.include)
        and op.operation_id not in options.exclude
        and (options.allow_destructive or not op.changes_state)
    ]
    if not selected:
        raise UsageError("no operation is left to check with these options")
    if (
        options.allow_destructive
        and not is_loopback(options.base_url)
        and not (options.org and options.repo)
    ):
        raise UsageError(
            "--allow-destructive against a host that is not loopback needs --org and --repo: "
            "the sandbox organization and repository the run may modify"
        )
    pinned = {k: v for k, v in (("idOrg", options.org), ("repoId", options.repo)) if v}
    # Stateful chains need a real parent: the sandbox, or (on loopback) the contract's examples.
    stateful_pins = pinned or _parent_examples(spec)
    ids = {op.operation_id for op in selected}
    chains = (
        [group for group in conformance.linked_groups(spec) if group <= ids]
        if options.allow_destructive
        else []
    )
    return Plan(selected=selected, chains=chains, pinned=pinned, stateful_pins=stateful_pins)


def describe(plan: Plan, options: CheckOptions, seed: int, out: TextIO) -> None:
    print(
        f"Checking {options.base_url} against {options.spec or 'the bundled openapi.yaml'}",
        file=out,
    )
    print(f"Seed: {seed} (repeat this run with --seed {seed})", file=out)
    print(f"Operations: {', '.join(op.operation_id for op in plan.selected)}", file=out)
    if plan.destructive:
        scope = []
        if "idOrg" in plan.pinned:
            scope.append(f"organization {plan.pinned['idOrg']}")
        if "repoId" in plan.pinned:
            scope.append(f"repository {plan.pinned['repoId']}")
        print("DESTRUCTIVE RUN: these operations change state and will be sent:", file=out)
        for op in plan.destructive:
            print(f"  {op.label} ({op.operation_id})", file=out)
        print(
            f"It may delete every key of {' and AI keys of '.join(scope) or 'the ids it uses'}, "
            "create, rename and delete keys, and register or unregister nodes.",
            file=out,
        )
    else:
        print(
            "Read-only run: no DELETE, POST or PUT is sent (--allow-destructive to include them).",
            file=out,
        )
    out.flush()


def ensure_reachable(base_url: str, timeout: float) -> None:
    try:
        httpx.get(base_url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise CouldNotRun(f"cannot reach {base_url}: {exc}") from exc


def execute(
    options: CheckOptions, spec: Mapping[str, Any], plan: Plan, seed: int
) -> conformance.RunResult:
    """Run schemathesis: every phase but stateful over the selection, then each link chain."""
    common: dict[str, Any] = {
        "seed": seed,
        "max_examples": options.max_examples,
        "token": options.token,
        "base_url": options.base_url,
        "workers": options.workers,
        "request_timeout": options.request_timeout,
    }
    every = conformance.operations(spec)
    partial = len(plan.selected) < len(every)
    if partial:
        common["unexpected_methods"] = PARTIAL_RUN_UNEXPECTED_METHODS
    result = conformance.RunResult(seed=seed)
    # Chains first: they need the parents (the sandbox) as they were before the run.
    for chain in plan.chains:
        result.merge(
            conformance.run(
                conformance.restrict(spec, chain),
                conformance.config_text(phases=("stateful",), pinned=plan.stateful_pins, **common),
            )
        )
    # Unselected operations are removed from the contract itself: nothing can send them.
    selected_spec = conformance.restrict(spec, {op.operation_id for op in plan.selected})
    result.merge(
        conformance.run(
            selected_spec,
            conformance.config_text(
                phases=("examples", "coverage", "fuzzing"), pinned=plan.pinned, **common
            ),
        )
    )
    return result


def summarize(result: conformance.RunResult, plan: Plan, out: TextIO) -> None:
    cases: Counter[str] = Counter()
    for (_, label), count in result.cases.items():
        cases[label] += count
    statuses: dict[str, Counter[int]] = {}
    for (_, label), codes in result.statuses.items():
        statuses.setdefault(label, Counter()).update(codes)
    failures = Counter(f.operation for f in result.findings)
    print("\nPer operation:", file=out)
    print(f"  {'operation':<48} {'cases':>6} {'failures':>8}  status codes seen", file=out)
    labels = [op.label for op in plan.selected]
    labels += sorted(set(cases) - set(labels))  # methods the contract does not declare
    for label in labels:
        seen = ", ".join(f"{code}x{n}" for code, n in sorted(statuses.get(label, {}).items()))
        print(f"  {label:<48} {cases[label]:>6} {failures[label]:>8}  {seen}", file=out)
    total = sum(cases.values())
    if result.findings:
        print(f"\n{len(result.findings)} failed checks:", file=out)
        for number, finding in enumerate(result.findings, 1):
            print(
                f"\n{number}. {finding.operation}: {finding.check} ({finding.phase} phase)",
                file=out,
            )
            print(f"   {finding.title}", file=out)
            for line in finding.message.strip().splitlines():
                print(f"   {line}", file=out)
            print("   Reproduce with:", file=out)
            for line in finding.reproduction.strip().splitlines():
                print(f"     {line}", file=out)
    for error in result.errors:
        print(f"\nerror: {error}", file=out)
    verdict = "FAILED" if result.findings or result.errors else "passed"
    print(
        f"\n{verdict}: {total} cases, {len(result.findings)} failed checks, "
        f"{len(result.errors)} errors (seed {result.seed})",
        file=out,
    )


def write_junit(result: conformance.RunResult, plan: Plan, path: Path, elapsed: float) -> None:
    """A JUnit XML report: one test case per operation, a failure element per failed check."""
    suite = ElementTree.Element(
        "testsuite",
        name="flashback-contract check",
        tests=str(len(plan.selected)),
        failures=str(len({f.operation for f in result.findings})),
        errors=str(len(result.errors)),
        time=f"{elapsed:.3f}",
    )
    ElementTree.SubElement(
        ElementTree.SubElement(suite, "properties"), "property", name="seed", value=str(result.seed)
    )
    for op in plan.selected:
        case = ElementTree.SubElement(
            suite, "testcase", classname="flashback-contract", name=op.label
        )
        for finding in (f for f in result.findings if f.operation == op.label):
            failure = ElementTree.SubElement(
                case, "failure", message=f"{finding.check}: {finding.title}", type=finding.check
            )
            failure.text = f"{finding.message}\n\nReproduce with:\n{finding.reproduction}"
    for error in result.errors:
        case = ElementTree.SubElement(suite, "testcase", classname="flashback-contract", name="run")
        ElementTree.SubElement(case, "error", message=error.splitlines()[0]).text = error
    root = ElementTree.Element("testsuites")
    root.append(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def check(options: CheckOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the check; the exit status says passed (0), failed (1), usage (2), could not run (3)."""
    out = out or sys.stdout
    err = err or sys.stderr
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    try:
        spec = load_contract(options.spec, options.request_timeout)
        plan = make_plan(options, spec)
        describe(plan, options, seed, out)
        ensure_reachable(options.base_url, options.request_timeout)
        started = time.monotonic()
        result = execute(options, spec, plan, seed)
        elapsed = time.monotonic() - started
    except UsageError as exc:
        print(f"flashback-contract check: {exc}", file=err)
        return EXIT_USAGE
    except CouldNotRun as exc:
        print(f"flashback-contract check: could not run: {exc}", file=err)
        return EXIT_COULD_NOT_RUN
    if result.unreachable:
        print(
            f"flashback-contract check: could not run: {options.base_url} stopped answering",
            file=err,
        )
        return EXIT_COULD_NOT_RUN
    summarize(result, plan, out)
    print(f"Time: {elapsed:.1f} s", file=out)
    if options.junit is not None:
        write_junit(result, plan, options.junit, elapsed)
        print(f"JUnit report: {options.junit}", file=out)
    return EXIT_FAILED if result.findings or result.errors else EXIT_OK
