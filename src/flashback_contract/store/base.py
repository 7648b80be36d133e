"""The storage port: a store hands out units of work; a unit of work commits whole or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from flashback_contract.domain import (
    Node,
    NodeKey,
    Organization,
    OrganizationKey,
    RepoAiApiKey,
    Repository,
    SystemEvent,
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
        """Delete one key of the organization and its node keys; False if there is none."""
        ...

    def verification_keys(self, org_id: str | None) -> list[OrganizationKey]:
        """Keys a node signature may be checked against: one organization's, or every one's."""
        ...

    # -- bridge nodes ------------------------------------------------------------
    def node(self, ip: str) -> Node | None: ...
    def save_node(self, node: Node) -> None:
        """Insert or refresh a node; its node key becomes (node.key_id, node.ip) alone."""
        ...

    def delete_node(self, ip: str) -> None:
        """Remove the node and every node key that names it."""
        ...

    def remember_signature(self, digest: str, accepted_at: datetime) -> bool:
        """Record an accepted signature; False when it was accepted before (a replay)."""
        ...

    # -- repository AI API keys --------------------------------------------
    def ai_keys(self, repo_id: str) -> list[RepoAiApiKey]:
        """The repository's keys that are not deleted, newest first."""
        ...

    def ai_key(self, key_id: str) -> RepoAiApiKey | None:
        """One key by id, deleted or not."""
        ...

    def add_ai_key(self, key: RepoAiApiKey) -> None: ...
    def rename_ai_key(self, key_id: str, name: str) -> None: ...
    def soft_delete_ai_key(self, key_id: str, deleted_at: datetime) -> None: ...

    # -- system events -------------------------------------------------------
    def add_event(self, event: SystemEvent) -> int:
        """Record an event; return its numeric id."""
        ...

    def events(self) -> list[SystemEvent]:
        """Every recorded event, newest first."""
        ...

    def is_empty(self) -> bool:
        """True when the store holds no organization (nothing was ever seeded)."""
        ...


class Store(Protocol):
    """A place where Flashback state lives."""

    url: str

    def transaction(self) -> AbstractContextManager[UnitOfWork]: ...
    def close(self) -> None: ...


TransactionIterator = Iterator[UnitOfWork]
