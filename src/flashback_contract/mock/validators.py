"""connexion's request validators, with each schema compiled once instead of once per request.

The checks and their messages are connexion's own (its ``validator_map`` extension point);
only the jsonschema validator objects are built at first use and kept.
"""

from __future__ import annotations

from typing import Any

from connexion.json_schema import Draft4RequestValidator
from connexion.utils import is_null, is_nullable
from connexion.validators import ParameterValidator
from jsonschema import Draft4Validator, ValidationError

from flashback_contract.mock.limits import StrictJSONBodyValidator, validator_map

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
