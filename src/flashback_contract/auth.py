"""Bearer tokens to principals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connexion.security import BearerSecurityHandler

from flashback_contract.domain import Role
from flashback_contract.store import Store


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user of one organization, with one role there."""

    user_id: str
    org_id: str
    role: Role


class Authenticator:
    """Resolves a Bearer token against the store's users."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def principal_for(self, token: str) -> Principal | None:
        with self._store.transaction() as uow:
            user = uow.user_by_token(token)
        if user is None:
            return None
        return Principal(user_id=user.id, org_id=user.org_id, role=user.role)

    def bearer_info(self, token: str) -> dict[str, Any] | None:
        """connexion's bearer-info contract: token info, or None for a 401."""
        principal = self.principal_for(token)
        if principal is None:
            return None
        return {"sub": principal.user_id, "principal": principal}


def bearer_security_handler(bearer_info: Callable[[str], dict[str, Any] | None]) -> type:
    """A connexion security handler bound to this app's token resolver (its ``security_map``)."""

    class AppBearerSecurityHandler(BearerSecurityHandler):  # type: ignore[misc]
        def _resolve_func(self, security_scheme: dict[str, Any]) -> Callable[..., Any]:
            return bearer_info

    return AppBearerSecurityHandler


def principal_of(token_info: dict[str, Any]) -> Principal:
    """The principal connexion's security layer attached to the request."""
    principal = token_info["principal"]
    assert isinstance(principal, Principal)
    return principal
