"""flashback-contract: the Flashback API contract, a stateful mock and a conformance harness.

The package holds three products around one contract (``contract.py``, ``openapi.yaml``):
``mock/`` (the stateful mock server), ``conformance/`` (``check``, the validating ``proxy`` and
its reports) and ``store/`` below the mock; ``web.py`` holds the envelope and CORS both serve with.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

# connexion imports starlette's test client at import time, which warns about httpx on
# every start of the server; the message says nothing about this package.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

if TYPE_CHECKING:
    from flashback_contract.mock.app import create_app
    from flashback_contract.mock.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so the conformance side can be imported without the mock's stack.
    if name == "create_app":
        from flashback_contract.mock.app import create_app

        return create_app
    if name == "Settings":
        from flashback_contract.mock.settings import Settings

        return Settings
    raise AttributeError(name)
