"""The storage port: a store hands out units of work; a unit of work commits whole or not at all."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from flashback_contract.domain import (
    EventContext,
    EventType,
    Node,
    NodeKey,
    Organization,
    OrganizationKey,
    RepoAiApiKey,
    Repository,
    SystemEvent,
    SystemEventRead,
    User,
)


class UnitOfWork(Protocol):
    """Everything one request reads and writes, inside one transaction.

    Leaving the ``with`` block normally commits; leaving it with an exception
    rolls every change back.
    """

    # -- identity ---------------------------------------------------------
    def add_organization(self, organization: Organization) -> None: ...
    def add_user(self, user: User, token: str | None) -> None: ...
    def add_repository(self, repository: Repository) -> None: ...
    def organization(self, org_id: str) -> Organization | None: ...
    def user(self, user_id: str) -> User | None: ...
    def user_by_token(self, token: str) -> User | None: ...
    def repository(self, repo_id: str) -> Repository | None: ...
    def lock_organization(self, org_id: str) -> None:
        """Serialise writers of one organization until the transaction ends (quota checks)."""
        ...

    def lock_state(self) -> None:
        """Serialise whole-state writers (seeding, reset, import) until the transaction ends."""
        ...

    # -- organization keys --------------------------------------------------
    def org_keys(self, org_id: str) -> list[OrganizationKey]:
        """The organization's keys, newest first, with their node keys ordered by node id."""
        ...

    def count_org_keys(self, org_id: str) -> int: ...
    def add_org_key(self, key: OrganizationKey) -> None: ...
    def add_node_key(self, node_key: NodeKey) -> None: ...
    def delete_org_keys(self, org_id: str) -> int:
        """Delete every key of the organization and their node keys; return how many keys."""
        ...

    def delete_org_key(self, org_id: str, key_id: str) -> bool:
        """Delete one key of the organization and its node keys; False if there is none.

        Of racing deletes of one key, exactly one returns True.
        """
        ...

    def verification_keys(self, org_id: str | None) -> list[OrganizationKey]:
        """Keys a node signature may be checked against: one organization's, or every one's."""
        ...

    # -- bridge nodes ------------------------------------------------------------
    def node(self, ip: str) -> Node | None: ...
    def save_node(self, node: Node) -> bool:
        """Insert or refresh a node; its node key becomes (node.key_id, node.ip) alone.

        A node whose key no longer exists (an imported state, say) gets no node key.
        Return True when the node is new: of racing first registrations, exactly one is.
        """
        ...

    def delete_node(self, ip: str, org_id: str) -> bool:
        """Remove the organization's node and every node key naming it; False if there is none.

        Of racing deletes of one node, exactly one returns True.
        """
        ...

    def remember_signature(self, digest: str, accepted_at: datetime) -> bool:
        """Record an accepted signature; False when it was accepted before (a replay)."""
        ...

    def forget_signatures(self, accepted_before: datetime) -> int:
        """Drop replay records older than a request can be replayed; return how many."""
        ...

    # -- repository AI API keys --------------------------------------------
    def ai_keys(self, repo_id: str) -> list[RepoAiApiKey]:
        """The repository's keys that are not deleted, newest first."""
        ...

    def ai_key(self, key_id: str) -> RepoAiApiKey | None:
        """One key by id, deleted or not."""
        ...

    def add_ai_key(self, key: RepoAiApiKey) -> None: ...
    def add_ai_keys(self, keys: Sequence[RepoAiApiKey]) -> None:
        """Add many keys at once, in order (seed loading)."""
        ...

    def rename_ai_key(self, key_id: str, name: str) -> str | None:
        """Rename a key that is not deleted; return the name it had, None if it is deleted.

        The key's row stays locked until the transaction ends, so racing renames each see
        the name the one before left.
        """
        ...

    def soft_delete_ai_key(self, key_id: str, deleted_at: datetime) -> bool:
        """Mark a key deleted unless it already is; of racing deletes exactly one returns True."""
        ...

    # -- system events -------------------------------------------------------
    def add_event(self, event: SystemEvent) -> int:
        """Record an event; return its numeric id."""
        ...

    def events(self) -> list[SystemEvent]:
        """Every recorded event, newest first."""
        ...

    def query_events(self, query: EventQuery) -> tuple[list[SystemEvent], int]:
        """One page of the events matching ``query``, newest first, and how many match."""
        ...

    def mark_event_read(self, event_id: int, user_id: str) -> None:
        """Record that the user has read the event; marking it again changes nothing."""
        ...

    def events_read_by(self, user_id: str, event_ids: Collection[int]) -> set[int]:
        """Which of these events the user has read."""
        ...

    # -- the mock's own state ------------------------------------------------------
    def setting(self, name: str) -> str | None:
        """A value the mock keeps with its data (a generated JWT secret, say)."""
        ...

    def put_setting_if_absent(self, name: str, value: str) -> str:
        """Store ``value`` unless the setting exists; return the value in force."""
        ...

    def everything(self) -> Dataset:
        """All Flashback data, for export."""
        ...

    def clear(self) -> None:
        """Remove all Flashback data (not the mock's settings): the state before seeding."""
        ...

    def is_empty(self) -> bool:
        """True when the store holds no organization (nothing was ever seeded)."""
        ...


@dataclass(frozen=True)
class EventQuery:
    """Which events to read: one organization, a time window, optional filters, a page."""

    org_id: str
    since: datetime
    until: datetime
    user_id: str | None = None
    context: EventContext | None = None
    event: EventType | None = None
    context_id: str | None = None
    workspace_id: str | None = None
    # Only the events this user has not read (showUnread: true).
    unread_by: str | None = None
    skip: int = 0
    take: int = 20

    def matches(self, e: SystemEvent) -> bool:
        """Every condition but ``unread_by``, which needs the store's read records."""
        return (
            e.org_id == self.org_id
            and self.since <= e.timestamp <= self.until
            and (self.user_id is None or e.user_id == self.user_id)
            and (self.context is None or e.context == self.context)
            and (self.event is None or e.event == self.event)
            and (self.context_id is None or e.context_id == self.context_id)
            and (self.workspace_id is None or e.workspace_id == self.workspace_id)
        )


@dataclass(frozen=True)
class Dataset:
    """All Flashback data a store holds, oldest first (the mock's settings aside)."""

    organizations: list[Organization]
    users: list[tuple[User, str | None]]
    repositories: list[Repository]
    org_keys: list[OrganizationKey]
    nodes: list[Node]
    ai_keys: list[RepoAiApiKey]
    events: list[SystemEvent]
    event_reads: list[SystemEventRead] = field(default_factory=list)


class Store(Protocol):
    """A place where Flashback state lives."""

    url: str

    def transaction(self) -> AbstractContextManager[UnitOfWork]: ...
    def reading(self) -> AbstractContextManager[UnitOfWork]:
        """A transaction that only reads: it never waits for writers (SQLite takes no lock)."""
        ...

    def may_wait(self, write: bool) -> bool:
        """Whether a transaction may wait now (a lock held elsewhere, a network round trip).

        The server runs transactions that cannot wait on its event loop, the others in a thread.
        """
        ...

    def data_version(self) -> int | None:
        """A number that changes after any commit, by any process, read cheaply; None where
        the store cannot tell without reading the data itself.

        What was read after this returned a value stays current while it returns the same.
        """
        ...

    def close(self) -> None: ...


TransactionIterator = Iterator[UnitOfWork]
