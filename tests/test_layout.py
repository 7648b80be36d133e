"""The package's products keep their dependency direction (the layout a newcomer reads)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "flashback_contract"


def _imports(folder: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (PACKAGE / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(PACKAGE))] = names
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("conformance", "flashback_contract.mock"),
        ("store", "flashback_contract.mock"),
        ("store", "flashback_contract.conformance"),
        ("mock", "flashback_contract.conformance"),
    ],
)
def test_products_keep_their_dependency_direction(folder: str, forbidden: str) -> None:
    offenders = {
        module: sorted(n for n in names if n == forbidden or n.startswith(forbidden + "."))
        for module, names in _imports(folder).items()
    }
    assert _imports(folder), f"no modules found under {folder}/"
    assert {m: n for m, n in offenders.items() if n} == {}
