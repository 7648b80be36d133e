"""What handlers need from the running app: settings, store, clock."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import flask

from flashback_contract.domain import EventContext, EventType, SystemEvent
from flashback_contract.mock.auth import Principal
from flashback_contract.mock.sessions import active_session
from flashback_contract.mock.settings import Settings
from flashback_contract.store import SessionCatalog, Store, UnitOfWork
from flashback_contract.store.kept import KeptReads

T = TypeVar("T")

EXTENSION_KEY = "flashback_contract"


@dataclass
class Services:
    settings: Settings
    default_store: Store
    sessions: SessionCatalog
    clock: Callable[[], datetime]
    # What JWT access tokens are signed with (configured, or generated and kept with the store).
    jwt_secret: str
    # Handlers' reads, kept while the store's data version stays the same (SQLite files).
    kept: KeptReads = field(default_factory=KeptReads)

    @property
    def store(self) -> Store:
        """The store of the request's session: the default state unless one is named."""
        active = active_session()
        return self.default_store if active is None else active.store

    @property
    def session(self) -> str | None:
        """The name of the request's session; None for the default state."""
        active = active_session()
        return None if active is None else active.name

    def read_kept(
        self,
        key: Hashable,
        read: Callable[[UnitOfWork], T],
        size: Callable[[T], int] | None = None,
    ) -> T:
        """``read`` in a read unit of the request's store, or what it returned under the
        store's current data version (``KeptReads``): ``key`` names everything it depends on,
        it returns immutable values, and ``size`` tells how many items a result holds."""
        return self.kept.read(self.store, key, read, size)

    def record_event(
        self,
        uow: UnitOfWork,
        actor: Principal | None,
        context: EventContext,
        event: EventType,
        context_id: str,
        details: dict[str, Any] | None = None,
        org_id: str | None = None,
    ) -> int:
        """Record a system event in the caller's transaction.

        ``actor`` is the calling user; signed node requests have none and name ``org_id``.
        """
        owner = org_id if actor is None else actor.org_id
        assert owner is not None
        return uow.add_event(
            SystemEvent(
                context=context,
                event=event,
                org_id=owner,
                user_id=None if actor is None else actor.user_id,
                context_id=context_id,
                timestamp=self.clock(),
                json_data=None if details is None else json.dumps(details, sort_keys=True),
            )
        )


def current_services() -> Services:
    """The services of the app handling the current request."""
    # The app itself, not the current_app proxy: through it every attribute read fails a
    # normal lookup (a formatted AttributeError) before it is proxied.
    app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
    services = app.extensions[EXTENSION_KEY]
    assert isinstance(services, Services)
    return services
