"""flashback-contract: the Flashback API contract, a stateful mock and a conformance harness."""

from flashback_contract.app import create_app
from flashback_contract.settings import Settings

__all__ = ["Settings", "create_app"]
