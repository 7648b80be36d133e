"""The contract every product shares: where ``openapi.yaml`` lives, read once, and its routes.

In the package when installed, at the repository root in a checkout.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def spec_path() -> Path:
    """Path of ``openapi.yaml``."""
    bundled = Path(str(resources.files("flashback_contract").joinpath("openapi.yaml")))
    if bundled.is_file():
        return bundled
    return Path(__file__).resolve().parents[2] / "openapi.yaml"


@cache
def load_spec() -> dict[str, Any]:
    """The contract as a mapping (read once)."""
    data = yaml.safe_load(spec_path().read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def read_spec(path: Path | None) -> dict[str, Any]:
    """The contract at ``path`` (YAML or JSON), or the bundled one when None."""
    if path is None:
        return load_spec()
    data = yaml.safe_load(Path(path).read_text("utf-8"))
    if not isinstance(data, dict) or "paths" not in data:
        raise ValueError(f"{path}: not an OpenAPI document")
    return data


HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@cache
def _path_methods() -> tuple[tuple[re.Pattern[str], tuple[str, ...]], ...]:
    routes = []
    for template, item in load_spec()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        methods = tuple(sorted(m.upper() for m in item if m in HTTP_METHODS))
        routes.append((re.compile(f"^{pattern}$"), methods))
    return tuple(routes)


def allowed_methods(path: str) -> tuple[str, ...]:
    """The methods the contract declares for a concrete request path (empty if none)."""
    for pattern, methods in _path_methods():
        if pattern.match(path):
            return methods
    return ()
