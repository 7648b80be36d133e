"""Scripted answers: an override is checked against the contract when it is made, not when used."""

from __future__ import annotations

from functools import cache
from typing import Any

from connexion.exceptions import BadRequestProblem
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from flashback_contract.contract import HTTP_METHODS, load_spec
from flashback_contract.mock.errors import ApiError
from flashback_contract.mock.frontend import documented_response, resolved_responses


@cache
def operations_by_id() -> dict[str, dict[str, Any]]:
    """Every operation of the contract by its operationId."""
    return {
        op["operationId"]: op
        for item in load_spec()["paths"].values()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def _schema_errors(schema: dict[str, Any], body: Any) -> str | None:
    # The schema's $refs point into the contract's components: validate inside that document.
    root = {"components": load_spec()["components"], "allOf": [schema]}
    error = best_match(OAS30Validator(root, format_checker=oas30_format_checker).iter_errors(body))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(the body)"
    return f"{where}: {error.message}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def prepare(request: dict[str, Any]) -> dict[str, Any]:
    """The override to store for a POST /__mock/overrides body; ApiError(400) if it breaks the
    contract (unknown operation, undocumented status or example, a body the schema refuses)."""
    operation_id = request["operationId"]
    operation = operations_by_id().get(operation_id)
    if operation is None:
        raise ApiError(400, f"Override refused: the contract has no operation {operation_id!r}")
    status = str(request["status"])
    responses = resolved_responses(operation)
    if status not in responses:
        raise ApiError(
            400,
            f"Override refused: status {status} is not documented for {operation_id}; "
            f"documented: {', '.join(sorted(responses))}",
        )
    if "body" in request and "example" in request:
        raise ApiError(400, "Override refused: give either example or body, not both")
    if "body" in request:
        content = responses[status].get("content", {})
        schema = content.get("application/json", {}).get("schema")
        if schema is None:
            raise ApiError(
                400,
                f"Override refused: {operation_id} documents no JSON body for status {status}",
            )
        problem = _schema_errors(schema, request["body"])
        if problem is not None:
            raise ApiError(
                400,
                f"Override refused: the body does not match the documented schema of "
                f"{operation_id} {status}: {problem}",
            )
        media_type, body = "application/json", request["body"]
    else:
        try:
            _, media_type, body = documented_response(
                operation, status, request.get("example"), "application/json"
            )
        except BadRequestProblem as exc:
            raise ApiError(400, f"Override refused: {exc.detail}") from exc
    times = request.get("times")
    return {
        "operationId": operation_id,
        "params": {name: _text(value) for name, value in (request.get("params") or {}).items()},
        "status": int(status),
        "example": request.get("example"),
        "mediaType": media_type,
        "body": body,
        "remaining": times,
        "delayMs": request.get("delayMs", 0),
    }
