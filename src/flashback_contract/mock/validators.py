"""connexion's request validation, with what does not depend on the request built once.

The checks and their messages are connexion's own: the validators through its
``validator_map`` extension point, with the jsonschema validator objects built at first use
and kept; the validation middleware's per-operation part, with its parser and validators
built with the operation (``PreparedRequestValidationOperation``).
"""

from __future__ import annotations

import logging
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import UnsupportedMediaTypeProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.utils import is_null, is_nullable, split_content_type
from connexion.validators import ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.types import Receive, Scope, Send

from flashback_contract.mock.limits import StrictJSONBodyValidator, validator_map

# connexion's logger for request validation, whose messages these are.
log = logging.getLogger("connexion.middleware.validation")

# Keyed by the schema object's id; the schema is kept alongside so the id stays its own.
_compiled: dict[int, tuple[dict[str, Any], Any]] = {}


def _compiled_validator(schema: dict[str, Any], validator_class: Any) -> Any:
    entry = _compiled.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, validator_class(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _compiled[id(schema)] = entry
    return entry[1]


class CompiledParameterValidator(ParameterValidator):  # type: ignore[misc]
    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        if is_nullable(param) and is_null(value):
            return None
        if value is not None:
            try:
                _compiled_validator(param.get("schema", param), Draft4Validator).validate(value)
            except ValidationError as exception:
                return str(exception)
            return None
        if param.get("required"):
            return f"Missing {parameter_type} parameter '{param['name']}'"
        return None


class CompiledJSONBodyValidator(StrictJSONBodyValidator):
    @property
    def _validator(self) -> Any:
        return _compiled_validator(self._schema, Draft4RequestValidator)


def compiled_validator_map() -> dict[str, Any]:
    """The strict validators (limits.py), compiled."""
    validators = validator_map()
    validators["body"]["*/*json"] = CompiledJSONBodyValidator
    validators["parameter"] = CompiledParameterValidator
    return validators


class PreparedRequestValidationOperation(RequestValidationOperation):  # type: ignore[misc]
    """connexion's request validation of one operation, built once instead of per request.

    For every request connexion builds a URI parser from the operation's parameters, a
    parameter validator around it, the media types the operation consumes and, for a body,
    a second parser and a body validator, looking the body's schema up again each time.
    None of it depends on the request but the body's media type and charset, so it is built
    when the operation is, and body validators are kept per media type and charset (at most
    ``KEPT_BODY_VALIDATORS``; a request with yet another charset gets one built for it, as
    connexion would). The checks, their order and their messages are connexion's.
    """

    KEPT_BODY_VALIDATORS = 16

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        operation = self._operation
        # connexion builds one for the parameters and one for the body, of the same class from
        # the same definitions; a parser keeps nothing of a request, so one serves both.
        self._uri_parser = operation.uri_parser_class(
            operation.parameters, operation.body_definition()
        )
        self._parameter_validator = self._validator_map["parameter"](
            operation.parameters,
            uri_parser=self._uri_parser,
            strict_validation=self.strict_validation,
            security_query_params=self.security_query_params,
        )
        consumes = [(media_type.lower(), None) for media_type in operation.consumes]
        self._consumes = MediaTypeDict(consumes) if consumes else None
        self._body_validators: dict[tuple[str, str], Any] = {}

    def extract_content_type(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
        # connexion's, without its helper's typing expressions evaluated on every call.
        content_type = next(
            (value.decode("latin-1") for name, value in headers if name.lower() == b"content-type"),
            None,
        )
        mime_type, encoding = split_content_type(content_type)
        if mime_type is None:
            consumes = self._operation.consumes
            mime_type = consumes[0] if consumes else "application/octet-stream"
        return mime_type, encoding or "utf-8"

    def validate_mime_type(self, mime_type: str) -> None:
        if self._consumes is not None and mime_type.lower() not in self._consumes:
            raise UnsupportedMediaTypeProblem(
                detail=f"Invalid Content-type ({mime_type}), expected {self._operation.consumes}"
            )

    def _body_validator(self, mime_type: str, encoding: str) -> Any:
        key = (mime_type, encoding)
        if key in self._body_validators:
            return self._body_validators[key]
        validator = self._new_body_validator(mime_type, encoding)
        if len(self._body_validators) < self.KEPT_BODY_VALIDATORS:
            self._body_validators[key] = validator
        return validator

    def _new_body_validator(self, mime_type: str, encoding: str) -> Any:
        operation = self._operation
        schema = operation.body_schema(mime_type)
        if not schema:
            return None
        try:
            body_validator = self._validator_map["body"][mime_type]
        except KeyError:
            log.info("Skipping validation. No validator registered for content type: %s", mime_type)
            return None
        return body_validator(
            schema=schema,
            required=operation.request_body.get("required", False),
            nullable=is_nullable(operation.body_definition(mime_type)),
            encoding=encoding,
            strict_validation=self.strict_validation,
            uri_parser=self._uri_parser,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._parameter_validator.validate(scope)
        mime_type, encoding = self.extract_content_type(scope["headers"])
        self.validate_mime_type(mime_type)
        validator = self._body_validator(mime_type, encoding)
        if validator is not None:
            receive, scope = await validator.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)


class PreparedRequestValidationAPI(RequestValidationAPI):  # type: ignore[misc]
    def make_operation(self, operation: Any) -> PreparedRequestValidationOperation:
        return PreparedRequestValidationOperation(
            self.next_app,
            operation=operation,
            strict_validation=self.strict_validation,
            validator_map=self.validator_map,
        )


class PreparedRequestValidationMiddleware(RequestValidationMiddleware):  # type: ignore[misc]
    """connexion's request validation middleware, with ``PreparedRequestValidationOperation``."""

    api_cls = PreparedRequestValidationAPI


def validate_with_prepared_operations(middlewares: list[Any]) -> None:
    """Put ``PreparedRequestValidationMiddleware`` in the place of connexion's middleware."""
    middlewares[middlewares.index(RequestValidationMiddleware)] = (
        PreparedRequestValidationMiddleware
    )
