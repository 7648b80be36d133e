"""Where the contract lives: in the package when installed, at the repository root in a checkout."""

from __future__ import annotations

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
