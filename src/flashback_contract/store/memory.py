"""In-memory adapter: fast, per-process, gone on exit."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

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
from flashback_contract.store.base import Dataset, EventQuery


@dataclass
class _State:
    organizations: dict[str, Organization] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    repositories: dict[str, Repository] = field(default_factory=dict)
    # Insertion order is creation order; lists are read newest first.
    org_keys: dict[str, OrganizationKey] = field(default_factory=dict)
    node_keys: list[NodeKey] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    signatures: dict[str, datetime] = field(default_factory=dict)
    ai_keys: dict[str, RepoAiApiKey] = field(default_factory=dict)
    events: list[SystemEvent] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> _State:
        # Domain objects are frozen, so copying the containers is a full snapshot.
        return _State(**{name: copy.copy(value) for name, value in vars(self).items()})


class MemoryUnitOfWork:
    def __init__(self, state: _State) -> None:
        self._s = state

    def add_organization(self, organization: Organization) -> None:
        self._s.organizations[organization.id] = organization

    def add_user(self, user: User, token: str | None) -> None:
        self._s.users[user.id] = user
        if token is not None:
            self._s.tokens[token] = user.id

    def add_repository(self, repository: Repository) -> None:
        self._s.repositories[repository.id] = repository

    def organization(self, org_id: str) -> Organization | None:
        return self._s.organizations.get(org_id)

    def user(self, user_id: str) -> User | None:
        return self._s.users.get(user_id)

    def user_by_token(self, token: str) -> User | None:
        user_id = self._s.tokens.get(token)
        return None if user_id is None else self._s.users.get(user_id)

    def repository(self, repo_id: str) -> Repository | None:
        return self._s.repositories.get(repo_id)

    def lock_organization(self, org_id: str) -> None:
        """The store-wide lock already serialises every transaction."""

    def org_keys(self, org_id: str) -> list[OrganizationKey]:
        keys = [k for k in reversed(self._s.org_keys.values()) if k.org_id == org_id]
        return [
            replace(
                k,
                node_keys=tuple(
                    sorted(
                        (nk for nk in self._s.node_keys if nk.key_id == k.id),
                        key=lambda nk: nk.node_id,
                    )
                ),
            )
            for k in keys
        ]

    def count_org_keys(self, org_id: str) -> int:
        return sum(1 for k in self._s.org_keys.values() if k.org_id == org_id)

    def add_org_key(self, key: OrganizationKey) -> None:
        self._s.org_keys[key.id] = replace(key, node_keys=())
        for node_key in key.node_keys:
            self.add_node_key(node_key)

    def add_node_key(self, node_key: NodeKey) -> None:
        if node_key not in self._s.node_keys:
            self._s.node_keys.append(node_key)

    def delete_org_keys(self, org_id: str) -> int:
        doomed = {k.id for k in self._s.org_keys.values() if k.org_id == org_id}
        self._remove_keys(doomed)
        return len(doomed)

    def delete_org_key(self, org_id: str, key_id: str) -> bool:
        key = self._s.org_keys.get(key_id)
        if key is None or key.org_id != org_id:
            return False
        self._remove_keys({key_id})
        return True

    def _remove_keys(self, key_ids: set[str]) -> None:
        for key_id in key_ids:
            del self._s.org_keys[key_id]
        self._s.node_keys = [nk for nk in self._s.node_keys if nk.key_id not in key_ids]

    def verification_keys(self, org_id: str | None) -> list[OrganizationKey]:
        return [k for k in self._s.org_keys.values() if org_id is None or k.org_id == org_id]

    def node(self, ip: str) -> Node | None:
        return self._s.nodes.get(ip)

    def save_node(self, node: Node) -> None:
        self._s.nodes[node.ip] = node
        self._s.node_keys = [nk for nk in self._s.node_keys if nk.node_id != node.ip]
        if node.key_id in self._s.org_keys:
            self.add_node_key(NodeKey(node.key_id, node.ip))

    def delete_node(self, ip: str) -> None:
        self._s.nodes.pop(ip, None)
        self._s.node_keys = [nk for nk in self._s.node_keys if nk.node_id != ip]

    def remember_signature(self, digest: str, accepted_at: datetime) -> bool:
        if digest in self._s.signatures:
            return False
        self._s.signatures[digest] = accepted_at
        return True

    def ai_keys(self, repo_id: str) -> list[RepoAiApiKey]:
        return [
            k
            for k in reversed(self._s.ai_keys.values())
            if k.repo_id == repo_id and not k.is_deleted
        ]

    def ai_key(self, key_id: str) -> RepoAiApiKey | None:
        return self._s.ai_keys.get(key_id)

    def add_ai_key(self, key: RepoAiApiKey) -> None:
        self._s.ai_keys[key.id] = key

    def rename_ai_key(self, key_id: str, name: str) -> None:
        self._s.ai_keys[key_id] = replace(self._s.ai_keys[key_id], name=name)

    def soft_delete_ai_key(self, key_id: str, deleted_at: datetime) -> None:
        self._s.ai_keys[key_id] = replace(self._s.ai_keys[key_id], deleted_at=deleted_at)

    def add_event(self, event: SystemEvent) -> int:
        event_id = len(self._s.events) + 1
        self._s.events.append(replace(event, id=event_id))
        return event_id

    def events(self) -> list[SystemEvent]:
        return list(reversed(self._s.events))

    def query_events(self, query: EventQuery) -> tuple[list[SystemEvent], int]:
        matching = [e for e in reversed(self._s.events) if query.matches(e)]
        return matching[query.skip : query.skip + query.take], len(matching)

    def setting(self, name: str) -> str | None:
        return self._s.settings.get(name)

    def put_setting_if_absent(self, name: str, value: str) -> str:
        return self._s.settings.setdefault(name, value)

    def everything(self) -> Dataset:
        tokens = {user_id: token for token, user_id in self._s.tokens.items()}
        return Dataset(
            organizations=list(self._s.organizations.values()),
            users=[(u, tokens.get(u.id)) for u in self._s.users.values()],
            repositories=list(self._s.repositories.values()),
            org_keys=[k for org in self._s.organizations for k in reversed(self.org_keys(org))],
            nodes=list(self._s.nodes.values()),
            ai_keys=list(self._s.ai_keys.values()),
            events=list(self._s.events),
        )

    def clear(self) -> None:
        settings = self._s.settings
        for name, value in vars(_State()).items():
            setattr(self._s, name, value)
        self._s.settings = settings

    def is_empty(self) -> bool:
        return not self._s.organizations


class MemoryStore:
    """State in a Python object; one lock serialises transactions."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._state = _State()
        self._lock = threading.RLock()
        self._busy = False

    @contextmanager
    def transaction(self) -> Iterator[MemoryUnitOfWork]:
        with self._lock:
            before = self._state.snapshot()
            self._busy = True
            try:
                yield MemoryUnitOfWork(self._state)
            except BaseException:
                self._state = before
                raise
            finally:
                self._busy = False

    reading = transaction

    def may_wait(self, write: bool) -> bool:
        # Transactions are in-memory work; only a long one (an import) makes others wait.
        return self._busy

    def close(self) -> None:
        """Nothing to release."""
