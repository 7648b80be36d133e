"""flashback-contract: the Flashback API contract, a stateful mock and a conformance harness."""

import warnings

# connexion imports starlette's test client at import time, which warns about httpx on
# every start of the server; the message says nothing about this package.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

from flashback_contract.app import create_app  # noqa: E402
from flashback_contract.settings import Settings  # noqa: E402

__all__ = ["Settings", "create_app"]
