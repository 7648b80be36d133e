"""Bearer tokens to principals."""

from __future__ import annotations

import asyncio
import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from connexion.security import BearerSecurityHandler

from flashback_contract.domain import Role
from flashback_contract.mock import tokens
from flashback_contract.store import Store
from flashback_contract.store.base import UnitOfWork
from flashback_contract.store.kept import KeptReads

TokenInfo = dict[str, Any] | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user of one organization, with one role there."""

    user_id: str
    org_id: str
    role: Role


class Authenticator:
    """Resolves a Bearer token: a JWT signed with the server's secret, or a static token.

    Where the store reports a data version (SQLite files), the user a token names is looked
    up once and kept until any commit changes the version (``KeptReads``): a read request
    then costs a look at the file's WAL-index header here instead of a transaction. A JWT's
    signature and expiry are checked on every request all the same.
    """

    def __init__(
        self, store_of: Callable[[], Store], jwt_secret: str, kept: KeptReads | None = None
    ) -> None:
        self._store_of = store_of
        self._jwt_secret = jwt_secret
        # Shared with the handlers' kept reads in the app: one bound for both.
        self._kept = kept if kept is not None else KeptReads()

    def principal_for(self, token: str) -> Principal | None:
        if tokens.looks_like_jwt(token):
            user_id = tokens.user_of(self._jwt_secret, token)
            if user_id is None:
                return None
            key = ("user", user_id)
        else:
            key = ("token", token)
        return self._kept.read(self._store_of(), key, functools.partial(_look_up, key))

    def bearer_info(self, token: str) -> TokenInfo | Awaitable[TokenInfo]:
        """connexion's bearer-info contract: token info, or None for a 401.

        Called on the event loop: a lookup that may wait runs in a thread (connexion awaits it).
        """
        if self._store_of().may_wait(write=False):
            return asyncio.to_thread(self._token_info, token)
        return self._token_info(token)

    def _token_info(self, token: str) -> TokenInfo:
        principal = self.principal_for(token)
        if principal is None:
            return None
        return {"sub": principal.user_id, "principal": principal}


def _look_up(key: tuple[str, str], uow: UnitOfWork) -> Principal | None:
    kind, value = key
    user = uow.user(value) if kind == "user" else uow.user_by_token(value)
    if user is None:
        return None
    return Principal(user_id=user.id, org_id=user.org_id, role=user.role)


CONTROL_SUBJECT = "mock-control"


def control_info(control_token: str | None) -> Callable[[str], dict[str, Any] | None]:
    """Token check of the mock control API: its own token, never a user's."""

    def check(token: str) -> dict[str, Any] | None:
        if control_token and hmac.compare_digest(token.encode(), control_token.encode()):
            return {"sub": CONTROL_SUBJECT}
        return None

    return check


def bearer_security_handler(
    bearer_info: Callable[[str], TokenInfo | Awaitable[TokenInfo]],
    control: Callable[[str], dict[str, Any] | None],
) -> type:
    """A connexion security handler bound to this app's token checks (its ``security_map``).

    Schemes marked ``x-flashback-control`` (mock-control.yaml) take the control token.
    """

    class AppBearerSecurityHandler(BearerSecurityHandler):  # type: ignore[misc]
        # connexion inspects the token function's signature on every request (twice); the
        # functions never change, so the answer is computed once per function.
        _accepts_kwarg = staticmethod(functools.cache(BearerSecurityHandler._accepts_kwarg))

        def _resolve_func(self, security_scheme: dict[str, Any]) -> Callable[..., Any]:
            return control if security_scheme.get("x-flashback-control") else bearer_info

    return AppBearerSecurityHandler


def principal_of(token_info: dict[str, Any]) -> Principal:
    """The principal connexion's security layer attached to the request."""
    principal = token_info["principal"]
    assert isinstance(principal, Principal)
    return principal
