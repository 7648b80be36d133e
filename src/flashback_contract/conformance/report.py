"""What the proxy saw, per operation: calls, statuses, violations and field-by-field drift.

Rendered as JSON (``GET /__proxy/report``, ``--report FILE.json``), Markdown (``FILE.md``) and
JUnit XML (``--junit``). Everything in it went through :mod:`redact` first.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flashback_contract.conformance.validation import (
    OUTSIDE_ENUM,
    OUTSIDE_THE_CONTRACT,
    REQUIRED_MISSING,
    ContractValidator,
    Operation,
    Violation,
    seen_fields,
)

REPORT_SUFFIXES = (".md", ".json")


@dataclass
class Example:
    """One redacted occurrence: the request as a curl line, and what came back."""

    request: str
    status: int | None
    response: str

    def as_dict(self) -> dict[str, Any]:
        return {"request": self.request, "status": self.status, "response": self.response}


@dataclass
class ViolationGroup:
    side: str
    kind: str
    status: int | None
    where: str
    detail: str
    count: int
    example: Example

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "kind": self.kind,
            "status": self.status,
            "where": self.where,
            "detail": self.detail,
            "count": self.count,
            "example": self.example.as_dict(),
        }


@dataclass
class ResponseShape:
    """The bodies of one operation's responses with one status and media type."""

    declared: set[str]
    responses: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    required_missing: Counter[str] = field(default_factory=Counter)
    enum_values: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class OperationReport:
    name: str
    method: str
    path: str
    documented: list[str]
    calls: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    groups: dict[tuple[str, str, int | None, str], ViolationGroup] = field(default_factory=dict)
    shapes: dict[tuple[int, str], ResponseShape] = field(default_factory=dict)
    # Calls the upstream did not answer: refused by --strict, unreachable, timed out.
    unanswered: Counter[str] = field(default_factory=Counter)

    @property
    def violations(self) -> int:
        return sum(g.count for g in self.groups.values())

    def drift(self) -> dict[str, list[dict[str, Any]]]:
        """What a docs team needs to fix the contract, field by field."""
        undocumented, never_seen, missing, enums = [], [], [], []
        for (status, media_type), shape in sorted(self.shapes.items()):
            of = {"status": status, "mediaType": media_type, "responses": shape.responses}
            for name, seen in sorted(shape.fields.items()):
                if name not in shape.declared:
                    undocumented.append({"field": name, "seenIn": seen, **of})
            for name in sorted(shape.declared - set(shape.fields)):
                never_seen.append({"field": name, **of})
            for name, count in sorted(shape.required_missing.items()):
                missing.append({"field": name, "missingIn": count, **of})
            for name, values in sorted(shape.enum_values.items()):
                enums.append({"field": name, "values": sorted(values), **of})
        statuses = sorted(self.statuses)
        return {
            "undocumentedFields": undocumented,
            "declaredFieldsNeverSeen": never_seen,
            "requiredFieldsMissing": missing,
            "enumValuesOutside": enums,
            "undocumentedStatuses": [
                {"status": s, "count": self.statuses[s]}
                for s in statuses
                if not _documents(self.documented, s)
            ],
            "documentedStatusesNeverSeen": [
                {"status": d} for d in self.documented if not any(_matches(d, s) for s in statuses)
            ],
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.name,
            "method": self.method,
            "path": self.path,
            "calls": self.calls,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "violationCount": self.violations,
            "violations": [g.as_dict() for g in self.groups.values()],
            "unanswered": dict(self.unanswered),
            "drift": self.drift() if self.path else {},
        }


def _matches(documented: str, status: int) -> bool:
    code = str(status)
    return documented == code or (documented.endswith("XX") and documented[0] == code[0])


def _documents(documented: list[str], status: int) -> bool:
    return "default" in documented or any(_matches(d, status) for d in documented)


class Report:
    """Accumulates observations while the proxy serves (one event loop, no locking needed)."""

    def __init__(self, validator: ContractValidator, upstream: str) -> None:
        self.validator = validator
        self.upstream = upstream
        self.operations: dict[str, OperationReport] = {}

    def _operation(self, operation: Operation | None) -> OperationReport:
        if operation is None:
            name = OUTSIDE_THE_CONTRACT
            if name not in self.operations:
                self.operations[name] = OperationReport(name, "", "", [])
            return self.operations[name]
        if operation.name not in self.operations:
            documented = self.validator.documented_statuses(operation)
            self.operations[operation.name] = OperationReport(
                operation.name, operation.method, operation.template, documented
            )
        return self.operations[operation.name]

    def observe(
        self,
        operation: Operation | None,
        example: Example,
        status: int | None,
        violations: list[Violation],
        media_type: str = "",
        body: Any = None,
        unanswered: str | None = None,
    ) -> None:
        """One call: its status, its violations, and the fields its JSON body carried."""
        entry = self._operation(operation)
        entry.calls += 1
        if unanswered is not None:
            entry.unanswered[unanswered] += 1
        elif status is not None:
            entry.statuses[status] += 1
        for violation in violations:
            key = (violation.side, violation.kind, violation.status, violation.group)
            if key in entry.groups:
                entry.groups[key].count += 1
            else:
                entry.groups[key] = ViolationGroup(
                    violation.side,
                    violation.kind,
                    violation.status,
                    violation.group,
                    violation.detail,
                    1,
                    example,
                )
        if operation is None or status is None or body is None:
            return
        shape_key = (status, media_type)
        if shape_key not in entry.shapes:
            declared = self.validator.declared_fields(operation, status, media_type)
            if (
                not declared
                and self.validator.response_schema(operation, status, media_type) is None
            ):
                return  # nothing declared to compare with: the status or type is the drift
            entry.shapes[shape_key] = ResponseShape(declared)
        shape = entry.shapes[shape_key]
        shape.responses += 1
        shape.fields.update(set(seen_fields(body)))
        response_side = [v for v in violations if v.side == "response"]
        shape.required_missing.update(
            {v.group for v in response_side if v.kind == REQUIRED_MISSING}
        )
        for violation in response_side:
            if violation.kind == OUTSIDE_ENUM and violation.value is not None:
                shape.enum_values.setdefault(violation.group, set()).add(violation.value)

    @property
    def calls(self) -> int:
        return sum(op.calls for op in self.operations.values())

    @property
    def violations(self) -> int:
        return sum(op.violations for op in self.operations.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "calls": self.calls,
            "violations": self.violations,
            "operations": [op.as_dict() for op in self._sorted()],
        }

    def _sorted(self) -> list[OperationReport]:
        return sorted(self.operations.values(), key=lambda op: (op.path == "", op.path, op.method))

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        return "\n".join(_markdown(self)) + "\n"

    def to_junit(self) -> str:
        suite = ET.Element(
            "testsuite",
            name="flashback-contract proxy",
            tests=str(len(self.operations)),
            failures=str(sum(1 for op in self.operations.values() if op.violations)),
        )
        for op in self._sorted():
            case = ET.SubElement(
                suite,
                "testcase",
                classname="flashback-contract.proxy",
                name=op.name if not op.path else f"{op.name} ({op.method} {op.path})",
            )
            if op.violations:
                failure = ET.SubElement(
                    case,
                    "failure",
                    type="contract violation",
                    message=f"{op.violations} violation(s) in {op.calls} call(s) of {op.name}",
                )
                failure.text = "\n".join(_violation_lines(op))
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"

    def write(self, path: Path) -> None:
        """``.md`` Markdown, ``.json`` JSON."""
        text = self.to_markdown() if path.suffix == ".md" else self.to_json()
        path.write_text(text, "utf-8")


def _violation_lines(op: OperationReport) -> list[str]:
    lines = []
    for g in op.groups.values():
        status = f" {g.status}" if g.status is not None else ""
        where = f" {g.where}" if g.where else ""
        detail = f" ({g.detail})" if g.detail else ""
        lines.append(f"{g.side}{status}{where}: {g.kind}{detail} x{g.count}")
        lines.append(f"  {g.example.request}")
    return lines


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """Inline code that survives backticks in the text (CommonMark: a longer fence)."""
    text = text.replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if fence != "`" else f"`{text}`"


def _markdown(report: Report) -> list[str]:
    out = [
        "# Contract proxy report",
        "",
        f"Upstream `{report.upstream}`: {report.calls} call(s), "
        f"{len(report.operations)} operation(s), {report.violations} violation(s).",
        "",
        "| operation | calls | statuses | violations |",
        "|---|---|---|---|",
    ]
    for op in report._sorted():
        statuses = ", ".join(f"{s} x{n}" for s, n in sorted(op.statuses.items()))
        out.append(f"| `{op.name}` | {op.calls} | {statuses} | {op.violations} |")
    for op in report._sorted():
        title = f"`{op.name}`" + (f" `{op.method} {op.path}`" if op.path else "")
        out += ["", f"## {title}", ""]
        line = f"{op.calls} call(s); statuses: " + (
            ", ".join(f"{s} x{n}" for s, n in sorted(op.statuses.items())) or "none"
        )
        if op.unanswered:
            line += "; not answered: " + ", ".join(f"{k} x{n}" for k, n in op.unanswered.items())
        out.append(line)
        if op.groups:
            out += [
                "",
                "| side | status | where | violation | count |",
                "|---|---|---|---|---|",
            ]
            for g in op.groups.values():
                detail = f" ({g.detail})" if g.detail else ""
                status = g.status if g.status is not None else ""
                out.append(
                    f"| {g.side} | {status} | `{_cell(g.where) or '-'}` "
                    f"| {_cell(g.kind + detail)} | {g.count} |"
                )
            out += ["", "Examples (credentials filtered):", ""]
            for g in op.groups.values():
                where = f" {g.where}" if g.where else ""
                out += [
                    f"- {g.side} {g.kind}{where}:",
                    "",
                    "  ```sh",
                    f"  {g.example.request}",
                    "  ```",
                    "",
                    f"  answered {g.example.status}: {_code(g.example.response)}"
                    if g.example.status is not None
                    else f"  {g.example.response}",
                    "",
                ]
        if op.path:
            out += _drift_markdown(op)
    return out


def _drift_markdown(op: OperationReport) -> list[str]:
    drift = op.drift()
    lines: list[str] = []
    for item in drift["undocumentedFields"]:
        lines.append(
            f"- undocumented field `{item['field']}` in {item['seenIn']} of "
            f"{item['responses']} responses of {op.name} {item['status']}"
        )
    for item in drift["requiredFieldsMissing"]:
        lines.append(
            f"- required field `{item['field']}` missing in {item['missingIn']} of "
            f"{item['responses']} responses of {op.name} {item['status']}"
        )
    for item in drift["enumValuesOutside"]:
        values = ", ".join(f"`{v}`" for v in item["values"])
        lines.append(
            f"- `{item['field']}` outside its enum in {op.name} {item['status']}: {values}"
        )
    for item in drift["undocumentedStatuses"]:
        lines.append(f"- status {item['status']} seen {item['count']} time(s), not documented")
    for item in drift["declaredFieldsNeverSeen"]:
        lines.append(
            f"- declared field `{item['field']}` never seen in {item['responses']} "
            f"response(s) {item['status']}"
        )
    if drift["documentedStatusesNeverSeen"]:
        never = ", ".join(str(item["status"]) for item in drift["documentedStatusesNeverSeen"])
        lines.append(f"- documented statuses never seen: {never}")
    return ["", "Drift:", "", *lines] if lines else []
