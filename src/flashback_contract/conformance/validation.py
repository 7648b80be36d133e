"""Real requests and responses checked against the contract with openapi-core.

openapi-core finds the operation and validates parameters, security, content types, bodies and
headers; this module turns its errors into short, value-free :class:`Violation` records (a JSON
pointer, a kind) and reads the contract's schemas for the field-by-field drift report.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_core import OpenAPI
from openapi_core.configurations import Config
from openapi_core.datatypes import RequestParameters
from openapi_core.deserializing.media_types import media_type_deserializers
from openapi_core.deserializing.media_types.exceptions import MediaTypeDeserializeError
from openapi_core.deserializing.media_types.util import plain_loads
from openapi_core.templating.media_types.exceptions import MediaTypeNotFound
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.request import (
    V30RequestBodyValidator,
    V30RequestParametersValidator,
    V30RequestValidator,
    V31RequestBodyValidator,
    V31RequestParametersValidator,
    V31RequestValidator,
)
from openapi_core.validation.request.exceptions import (
    MissingParameterError,
    MissingRequestBodyError,
    ParameterValidationError,
    SecurityValidationError,
)
from openapi_core.validation.response.exceptions import (
    HeaderValidationError,
    MissingData,
)
from werkzeug.datastructures import Headers, ImmutableMultiDict

from flashback_contract.conformance.redact import SECRET_NAME
from flashback_contract.contract import HTTP_METHODS

# Violation kinds: what the report groups by, and what a person reads first.
UNKNOWN_PATH = "unknown path"
UNKNOWN_METHOD = "undocumented method"
MISSING_SECURITY = "missing security"
INVALID_PARAMETER = "invalid parameter"
MISSING_PARAMETER = "missing parameter"
MISSING_BODY = "missing body"
CONTENT_TYPE = "undocumented content type"
UNREADABLE_BODY = "unreadable body"
UNDOCUMENTED_STATUS = "undocumented status"
WRONG_TYPE = "wrong type"
REQUIRED_MISSING = "required field missing"
UNDOCUMENTED_FIELD = "undocumented field"
OUTSIDE_ENUM = "value outside the enum"
WRONG_FORMAT = "wrong format"
INVALID_HEADER = "invalid header"
SCHEMA = "schema"
NOT_CHECKED = "not checked"

# The pseudo-operation that collects requests the contract does not describe.
OUTSIDE_THE_CONTRACT = "(outside the contract)"

_REQUIRED = re.compile(r"^'(?P<name>.+)' is a required property$")


@dataclass(frozen=True)
class Violation:
    """One disagreement with the contract, without any value from the traffic but enum ones."""

    side: str  # "request" or "response"
    kind: str
    where: str = ""  # JSON pointer into the body, or "path idOrg", "header X-..."
    detail: str = ""
    status: int | None = None
    # The offending value, for enum drift only (never for secret-looking fields).
    value: str | None = None

    @property
    def group(self) -> str:
        """``where`` with array indexes as ``*``: violations of one field in a list are one."""
        return re.sub(r"/\d+(?=/|$)", "/*", self.where)

    def short(self) -> str:
        """The compact form used in the ``X-Contract-Violations`` header and logs."""
        head = self.side if self.status is None else f"{self.side} {self.status}"
        where = f" {self.where}" if self.where else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{head}{where}: {self.kind}{detail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "kind": self.kind,
            "where": self.where,
            "detail": self.detail,
            "status": self.status,
        }


@dataclass
class Exchange:
    """What the proxy saw of one request, in the shape openapi-core's protocols read."""

    method: str
    path: str
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def header_map(self) -> Headers:
        return Headers(self.headers)


@dataclass(frozen=True)
class Operation:
    """A contract operation matched by a request."""

    name: str  # operationId, or "METHOD /template" when the contract gives none
    method: str
    template: str
    path_params: Mapping[str, str]


class _OpenApiRequest:
    """openapi-core's Request protocol over an :class:`Exchange`."""

    host_url = "http://proxy.invalid"

    def __init__(self, exchange: Exchange, operation: Operation) -> None:
        headers = exchange.header_map
        self.method = exchange.method.lower()
        self.path = exchange.path
        # The operation is known: openapi-core need not match the path again.
        self.path_pattern = operation.template
        self.body: bytes | None = exchange.body or None
        self.content_type = (headers.get("content-type") or "").lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(exchange.query, keep_blank_values=True)),
            header=headers,
            path=dict(operation.path_params),
        )


class _OpenApiResponse:
    """openapi-core's Response protocol over what the upstream answered."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content_type = (headers.get("content-type") or "").lower()
        self.data: bytes | None = body


def _pointer(parts: Iterable[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _safe_value(where: str, value: Any) -> str | None:
    if SECRET_NAME.search(where.rsplit("/", 1)[-1]):
        return None
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_violations(
    side: str, status: int | None, errors: Iterable[Any], prefix: str = ""
) -> Iterator[Violation]:
    """jsonschema errors (read through openapi-core) as violations, values left out."""
    for error in errors:
        keyword = str(getattr(error, "validator", ""))
        expected = getattr(error, "validator_value", None)
        instance = getattr(error, "instance", None)
        where = prefix + _pointer(getattr(error, "absolute_path", ()))
        if keyword == "required":
            match = _REQUIRED.match(str(getattr(error, "message", "")))
            name = match.group("name") if match else "?"
            yield Violation(side, REQUIRED_MISSING, f"{where}/{name}", status=status)
        elif keyword == "type":
            yield Violation(side, WRONG_TYPE, where, f"expected {expected}", status)
        elif keyword == "enum":
            value = _safe_value(where, instance)
            yield Violation(side, OUTSIDE_ENUM, where, value or "", status, value=value)
        elif keyword == "format":
            yield Violation(side, WRONG_FORMAT, where, f"expected {expected}", status)
        elif keyword in {"pattern", "anyOf", "oneOf", "allOf", "not"}:
            yield Violation(side, SCHEMA, where, f"{keyword} not satisfied", status)
        else:
            yield Violation(side, SCHEMA, where, f"{keyword} {json.dumps(expected)}", status)


def _parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def _body_violations(side: str, status: int | None, exc: Exception) -> Iterator[Violation]:
    cause = exc.__cause__
    if isinstance(cause, MediaTypeNotFound):
        documented = ", ".join(cause.availableMimetypes)
        got = cause.mimetype or "none"
        yield Violation(side, CONTENT_TYPE, "", f"{got}; documented: {documented}", status)
    elif isinstance(cause, MediaTypeDeserializeError):
        yield Violation(side, UNREADABLE_BODY, "", f"not valid {cause.mimetype}", status)
    elif getattr(cause, "schema_errors", None) is not None:
        yield from _schema_violations(side, status, cause.schema_errors)  # type: ignore[union-attr]
    else:
        yield Violation(side, SCHEMA, "", type(exc).__name__, status)


# openapi-core's request validator stops at a security error; its parts report the rest, so a
# request without credentials still has its parameters and body checked.
_REQUEST_PARTS: dict[type[Any], tuple[type[Any], ...]] = {
    V30RequestValidator: (V30RequestParametersValidator, V30RequestBodyValidator),
    V31RequestValidator: (V31RequestParametersValidator, V31RequestBodyValidator),
}


class ContractValidator:
    """Validates exchanges against one contract (read once, at start-up)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        checked = copy.deepcopy(dict(spec))
        # The proxy answers on its own host: match paths under the servers' base paths only.
        bases = sorted({urlsplit(s.get("url", "/")).path or "/" for s in spec.get("servers", [])})
        checked["servers"] = [{"url": base} for base in bases or ["/"]]
        # Undocumented fields are found by walking the contract's schemas (undocumented_fields),
        # not with openapi-core's "forbid" policy, which builds a validator class per call and
        # more than doubles the cost of a check.
        config = Config(extra_media_type_deserializers=self._text_media_types(spec))
        self.openapi = OpenAPI.from_dict(checked, config=config)
        parts = _REQUEST_PARTS.get(self.openapi.request_validator_cls or object, ())
        self._after_security = [
            OpenAPI(
                self.openapi.spec,
                config=replace(config, request_validator_cls=part, spec_validator_cls=None),
            )
            for part in parts
        ]
        self._finder = APICallPathFinder(self.openapi.spec)

    @staticmethod
    def _text_media_types(spec: Mapping[str, Any]) -> dict[str, Any]:
        """Documented media types with a string schema openapi-core has no reader for (PEM)."""
        found: dict[str, Any] = {}
        for item in spec.get("paths", {}).values():
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    continue
                for response in operation.get("responses", {}).values():
                    for media_type, content in response.get("content", {}).items():
                        known = media_type in media_type_deserializers or "json" in media_type
                        if not known and content.get("schema", {}).get("type") == "string":
                            found[media_type] = plain_loads
        return found

    def operation(self, exchange: Exchange) -> tuple[Operation | None, list[Violation]]:
        """The operation a request addresses, or None and why not."""
        operation, violations = self._find(exchange.method.upper(), exchange.path)
        return operation, list(violations)

    # Real traffic repeats its paths: matching one against the contract's templates is done once.
    @lru_cache(maxsize=4096)  # noqa: B019 (the validator lives as long as the process)
    def _find(self, method: str, path: str) -> tuple[Operation | None, tuple[Violation, ...]]:
        try:
            found = self._finder.find(method.lower(), _OpenApiRequest.host_url + path)
        except PathNotFound:
            return None, (Violation("request", UNKNOWN_PATH, "", "not in the contract"),)
        except OperationNotFound:
            return None, (Violation("request", UNKNOWN_METHOD, "", f"{method} not documented"),)
        template = found.path_result.pattern
        operation_id = (
            (found.operation / "operationId").read_str(None)
            if "operationId" in found.operation
            else None
        )
        name = operation_id or f"{method} {template}"
        return Operation(name, method, template, found.path_result.variables or {}), ()

    def request_violations(self, exchange: Exchange, operation: Operation) -> list[Violation]:
        """Parameter, security and body violations of a request to a known operation."""
        request = _OpenApiRequest(exchange, operation)
        violations: list[Violation] = []
        for error in self.openapi.iter_apicall_request_errors(request):
            if isinstance(error, SecurityValidationError):
                violations.append(Violation("request", MISSING_SECURITY, "", "no credentials"))
                for part in self._after_security:
                    for later in part.iter_apicall_request_errors(request):
                        violations.extend(self._request_error(later))
            else:
                violations.extend(self._request_error(error))
        schema = self.request_schema(operation, request.content_type)
        body = _json(exchange.body) if schema is not None else None
        if body is not None:
            for where in self.undocumented_fields(body, schema):
                violations.append(Violation("request", UNDOCUMENTED_FIELD, where))
        return list(dict.fromkeys(violations))

    @staticmethod
    def _request_error(error: Exception) -> Iterator[Violation]:
        if isinstance(error, MissingParameterError):
            yield Violation("request", MISSING_PARAMETER, f"{error.location} {error.name}")
        elif isinstance(error, ParameterValidationError):
            where = f"{error.location} {error.name}"
            errors = getattr(error.__cause__, "schema_errors", None)
            if errors:
                for violation in _schema_violations("request", None, errors):
                    yield Violation(
                        "request", INVALID_PARAMETER, where, violation.detail or violation.kind
                    )
            else:
                yield Violation("request", INVALID_PARAMETER, where)
        elif isinstance(error, MissingRequestBodyError):
            yield Violation("request", MISSING_BODY)
        else:
            yield from _body_violations("request", None, error)

    def response_violations(
        self,
        exchange: Exchange,
        operation: Operation,
        status: int,
        headers: Headers,
        body: bytes,
    ) -> list[Violation]:
        """Status, content type, body and header violations of an upstream answer."""
        violations: list[Violation] = []
        response = _OpenApiResponse(status, headers, body)
        errors = self.openapi.iter_apicall_response_errors(
            _OpenApiRequest(exchange, operation), response
        )
        for error in errors:
            if isinstance(error, ResponseNotFound):
                violations.append(Violation("response", UNDOCUMENTED_STATUS, "", "", status))
            elif isinstance(error, MissingData):
                violations.append(Violation("response", MISSING_BODY, "", "", status))
            elif isinstance(error, HeaderValidationError):
                where = f"header {error.name}"
                violations.append(Violation("response", INVALID_HEADER, where, "", status))
            else:
                violations.extend(_body_violations("response", status, error))
        media_type = response.content_type.split(";", 1)[0].strip()
        schema = self.response_schema(operation, status, media_type)
        parsed = _json(body) if schema is not None else None
        if parsed is not None:
            for where in self.undocumented_fields(parsed, schema):
                violations.append(Violation("response", UNDOCUMENTED_FIELD, where, "", status))
        return list(dict.fromkeys(violations))

    # Schema facts: undocumented fields, and the drift report.

    def undocumented_fields(
        self, body: Any, schema: Any, at: tuple[Any, ...] = ()
    ) -> Iterator[str]:
        """JSON pointers of the fields in ``body`` that ``schema`` does not declare.

        An object schema without ``additionalProperties`` admits its declared properties only
        (openapi-core's "forbid" reading of the contract).
        """
        schema = self._resolve(schema)
        if not isinstance(schema, Mapping):
            return
        if isinstance(body, dict):
            properties, closed = self._properties(schema)
            for name, value in body.items():
                if name in properties:
                    yield from self.undocumented_fields(value, properties[name], (*at, name))
                elif closed:
                    yield _pointer((*at, name))
        elif isinstance(body, list) and "items" in schema:
            for index, item in enumerate(body):
                yield from self.undocumented_fields(item, schema["items"], (*at, index))

    def _properties(self, schema: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Declared properties (across allOf/anyOf/oneOf) and whether no other is admitted."""
        properties = dict(schema.get("properties", {}))
        closed = "properties" in schema or schema.get("type") == "object"
        opened = schema.get("additionalProperties", False) is not False
        for combined in ("allOf", "anyOf", "oneOf"):
            for part in schema.get(combined, []):
                more, part_closed = self._properties(self._resolve(part))
                properties.update(more)
                closed = closed or part_closed
                opened = (
                    opened or self._resolve(part).get("additionalProperties", False) is not False
                )
        return properties, closed and not opened

    def documented_statuses(self, operation: Operation) -> list[str]:
        return sorted(str(s) for s in self._operation(operation).get("responses", {}))

    def declared_fields(self, operation: Operation, status: int, media_type: str) -> set[str]:
        """JSON pointer templates (``/apiKeys/*/id``) the contract declares for a response."""
        schema = self.response_schema(operation, status, media_type)
        return set(self._fields(schema, "", depth=0)) if schema is not None else set()

    def request_schema(self, operation: Operation, content_type: str) -> Any:
        media_type = content_type.split(";", 1)[0].strip().lower()
        body = self._resolve(self._operation(operation).get("requestBody", {}))
        schema = body.get("content", {}).get(media_type, {}).get("schema")
        return self._resolve(schema) if schema is not None else None

    def response_schema(self, operation: Operation, status: int, media_type: str) -> Any:
        responses = self._operation(operation).get("responses", {})
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                content = self._resolve(responses[key]).get("content", {})
                schema = content.get(media_type, {}).get("schema")
                return self._resolve(schema) if schema is not None else None
        return None

    def _operation(self, operation: Operation) -> Mapping[str, Any]:
        item = self._resolve(self.spec["paths"][operation.template])
        found: Mapping[str, Any] = self._resolve(item[operation.method.lower()])
        return found

    def _resolve(self, node: Any) -> Any:
        while isinstance(node, Mapping) and "$ref" in node:
            target: Any = self.spec
            for part in _parts(node["$ref"].split("#", 1)[1]):
                target = target[part]
            node = target
        return node

    def _fields(self, schema: Any, prefix: str, depth: int) -> Iterator[str]:
        schema = self._resolve(schema)
        if not isinstance(schema, Mapping) or depth > 20:
            return
        for combined in ("allOf", "anyOf", "oneOf"):
            for part in schema.get(combined, []):
                yield from self._fields(part, prefix, depth + 1)
        for name, sub in schema.get("properties", {}).items():
            here = f"{prefix}/{name}"
            yield here
            yield from self._fields(sub, here, depth + 1)
        if "items" in schema:
            yield from self._fields(schema["items"], f"{prefix}/*", depth + 1)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def seen_fields(body: Any, prefix: str = "") -> Iterator[str]:
    """JSON pointer templates of every object field in a body (array indexes as ``*``)."""
    if isinstance(body, dict):
        for name, value in body.items():
            here = _pointer([*_parts(prefix), name])
            yield here
            yield from seen_fields(value, here)
    elif isinstance(body, list):
        for item in body:
            yield from seen_fields(item, f"{prefix}/*")
