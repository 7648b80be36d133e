"""In-memory adapter: fast, per-process, gone on exit.

A transaction changes the state in place and keeps an undo log of what it changed; a rollback
replays the log backwards. Indexes (keys by organization, AI keys by repository, events by
organization, node keys both ways) keep every call to the data it names, so a request costs
the same with 100,000 keys as with the demo data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from flashback_contract.domain import (
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
from flashback_contract.store.base import Dataset, EventQuery

# An index entry: owner id to the ids it holds, in creation order (a dict is an ordered set).
Members = dict[str, None]


@dataclass
class _State:
    organizations: dict[str, Organization] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    repositories: dict[str, Repository] = field(default_factory=dict)
    org_keys: dict[str, OrganizationKey] = field(default_factory=dict)
    org_keys_by_org: dict[str, Members] = field(default_factory=dict)
    node_ids_by_key: dict[str, Members] = field(default_factory=dict)
    key_ids_by_node: dict[str, Members] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    signatures: dict[str, datetime] = field(default_factory=dict)
    ai_keys: dict[str, RepoAiApiKey] = field(default_factory=dict)
    # Active keys only, oldest first: a listing never walks the keys deleted before.
    ai_keys_by_repo: dict[str, Members] = field(default_factory=dict)
    events: list[SystemEvent] = field(default_factory=list)
    events_by_org: dict[str, list[SystemEvent]] = field(default_factory=dict)
    # (event id, user id): who has read what, beside the events themselves.
    event_reads: set[tuple[int, str]] = field(default_factory=set)
    settings: dict[str, str] = field(default_factory=dict)


# The old value of a key that was not there.
_ABSENT: Any = object()


class _UndoLog:
    """What a transaction changed, as steps that put it back (run newest first).

    A change to a dict is kept as a tuple (the dict, the key, its old value or ``_ABSENT``),
    other steps as a one-tuple of a callable: a seed or an import writes every row in one
    transaction, and a tuple is a fraction of a closure's size.
    """

    def __init__(self) -> None:
        self._steps: list[tuple[Any, ...]] = []
        self._kept: set[int] = set()
        # Index entries this transaction created: putting the entry back removes its members.
        self._created: set[int] = set()

    def put(self, mapping: dict[str, Any], key: str, value: Any) -> None:
        self._steps.append((mapping, key, mapping.get(key, _ABSENT)))
        mapping[key] = value

    def remove(self, mapping: dict[str, Any], key: str) -> None:
        if key in mapping:
            self._steps.append((mapping, key, mapping.pop(key)))

    def created(self, members: Members) -> None:
        self._created.add(id(members))

    def added(self, members: Members, member: str) -> None:
        """``member`` was added last to ``members``: undone by taking it out again."""
        if id(members) not in self._created:
            self._steps.append((members, member, _ABSENT))

    def keep(self, members: Members) -> Members:
        """Save a small index entry whole before its first change, so order comes back too."""
        if id(members) not in self._kept:
            self._kept.add(id(members))
            saved = dict(members)

            def restore() -> None:
                members.clear()
                members.update(saved)

            self._steps.append((restore,))
        return members

    def append(self, items: list[Any], item: Any) -> None:
        items.append(item)
        self._steps.append((items.pop,))

    def step(self, undo: Callable[[], None]) -> None:
        self._steps.append((undo,))

    def rollback(self) -> None:
        for step in reversed(self._steps):
            if len(step) == 1:
                step[0]()
                continue
            mapping, key, old = step
            if old is _ABSENT:
                mapping.pop(key, None)
            else:
                mapping[key] = old
        self._steps.clear()


class MemoryUnitOfWork:
    def __init__(self, state: _State, undo: _UndoLog) -> None:
        self._s = state
        self._undo = undo

    def _add_member(self, index: dict[str, Members], owner: str, member: str) -> None:
        """Add ``member`` last to the owner's index entry.

        Undone by taking it out again: steps run newest first, so the entry comes back in
        its order, and the cost does not grow with the entry (a repository's AI keys).
        """
        members = index.get(owner)
        if members is None:
            members = {}
            self._undo.put(index, owner, members)
            self._undo.created(members)
        if member not in members:
            members[member] = None
            self._undo.added(members, member)

    def _remove_member(self, index: dict[str, Members], owner: str, member: str) -> None:
        """Take ``member`` out of the owner's index entry; the entry is saved whole first
        (once a transaction), since putting a member back would change its order. Entries
        that lose members are small: an organization's keys, a key's or a node's links, a
        repository's active AI keys."""
        members = index.get(owner)
        if members is not None and member in members:
            self._undo.keep(members).pop(member)

    def add_organization(self, organization: Organization) -> None:
        self._undo.put(self._s.organizations, organization.id, organization)

    def add_user(self, user: User, token: str | None) -> None:
        self._undo.put(self._s.users, user.id, user)
        if token is not None:
            self._undo.put(self._s.tokens, token, user.id)

    def add_repository(self, repository: Repository) -> None:
        self._undo.put(self._s.repositories, repository.id, repository)

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

    def lock_state(self) -> None:
        """The store-wide lock already serialises every transaction."""

    def _with_node_keys(self, key: OrganizationKey) -> OrganizationKey:
        node_ids = self._s.node_ids_by_key.get(key.id, ())
        if not node_ids and not key.node_keys:
            return key  # keys are stored without their node keys (add_org_key)
        node_keys = tuple(NodeKey(key.id, node_id) for node_id in sorted(node_ids))
        return OrganizationKey(key.id, key.org_id, key.public_key, key.created_at, node_keys)

    def org_keys(self, org_id: str) -> list[OrganizationKey]:
        key_ids = reversed(self._s.org_keys_by_org.get(org_id, {}))
        return [self._with_node_keys(self._s.org_keys[key_id]) for key_id in key_ids]

    def count_org_keys(self, org_id: str) -> int:
        return len(self._s.org_keys_by_org.get(org_id, ()))

    def add_org_key(self, key: OrganizationKey) -> None:
        self._undo.put(self._s.org_keys, key.id, replace(key, node_keys=()))
        self._add_member(self._s.org_keys_by_org, key.org_id, key.id)
        for node_key in key.node_keys:
            self.add_node_key(node_key)

    def add_node_key(self, node_key: NodeKey) -> None:
        self._add_member(self._s.node_ids_by_key, node_key.key_id, node_key.node_id)
        self._add_member(self._s.key_ids_by_node, node_key.node_id, node_key.key_id)

    def _remove_node_key(self, key_id: str, node_id: str) -> None:
        self._remove_member(self._s.node_ids_by_key, key_id, node_id)
        self._remove_member(self._s.key_ids_by_node, node_id, key_id)

    def delete_org_keys(self, org_id: str) -> int:
        doomed = list(self._s.org_keys_by_org.get(org_id, ()))
        for key_id in doomed:
            self._remove_key(key_id)
        return len(doomed)

    def delete_org_key(self, org_id: str, key_id: str) -> bool:
        key = self._s.org_keys.get(key_id)
        if key is None or key.org_id != org_id:
            return False
        self._remove_key(key_id)
        return True

    def _remove_key(self, key_id: str) -> None:
        key = self._s.org_keys[key_id]
        for node_id in list(self._s.node_ids_by_key.get(key_id, ())):
            self._remove_node_key(key_id, node_id)
        self._remove_member(self._s.org_keys_by_org, key.org_id, key_id)
        self._undo.remove(self._s.org_keys, key_id)

    def verification_keys(self, org_id: str | None) -> list[OrganizationKey]:
        owners = self._s.org_keys_by_org if org_id is None else [org_id]
        return [
            self._s.org_keys[key_id]
            for owner in owners
            for key_id in self._s.org_keys_by_org.get(owner, ())
        ]

    def node(self, ip: str) -> Node | None:
        return self._s.nodes.get(ip)

    def save_node(self, node: Node) -> bool:
        new = node.ip not in self._s.nodes
        self._undo.put(self._s.nodes, node.ip, node)
        for key_id in list(self._s.key_ids_by_node.get(node.ip, ())):
            self._remove_node_key(key_id, node.ip)
        if node.key_id in self._s.org_keys:
            self.add_node_key(NodeKey(node.key_id, node.ip))
        return new

    def delete_node(self, ip: str, org_id: str) -> bool:
        node = self._s.nodes.get(ip)
        if node is None or node.org_id != org_id:
            return False
        self._undo.remove(self._s.nodes, ip)
        for key_id in list(self._s.key_ids_by_node.get(ip, ())):
            self._remove_node_key(key_id, ip)
        return True

    def remember_signature(self, digest: str, accepted_at: datetime) -> bool:
        if digest in self._s.signatures:
            return False
        self._undo.put(self._s.signatures, digest, accepted_at)
        return True

    def forget_signatures(self, accepted_before: datetime) -> int:
        old = [d for d, accepted_at in self._s.signatures.items() if accepted_at < accepted_before]
        for digest in old:
            self._undo.remove(self._s.signatures, digest)
        return len(old)

    def ai_keys(self, repo_id: str) -> list[RepoAiApiKey]:
        active = self._s.ai_keys_by_repo.get(repo_id, {})
        return [self._s.ai_keys[key_id] for key_id in reversed(active)]

    def ai_key(self, key_id: str) -> RepoAiApiKey | None:
        return self._s.ai_keys.get(key_id)

    def add_ai_key(self, key: RepoAiApiKey) -> None:
        self._undo.put(self._s.ai_keys, key.id, key)
        if not key.is_deleted:
            self._add_member(self._s.ai_keys_by_repo, key.repo_id, key.id)

    def add_ai_keys(self, keys: Sequence[RepoAiApiKey]) -> None:
        for key in keys:
            self.add_ai_key(key)

    def rename_ai_key(self, key_id: str, name: str) -> str | None:
        key = self._s.ai_keys.get(key_id)
        if key is None or key.is_deleted:
            return None
        self._undo.put(self._s.ai_keys, key_id, replace(key, name=name))
        return key.name

    def soft_delete_ai_key(self, key_id: str, deleted_at: datetime) -> bool:
        key = self._s.ai_keys.get(key_id)
        if key is None or key.is_deleted:
            return False
        self._undo.put(self._s.ai_keys, key_id, replace(key, deleted_at=deleted_at))
        self._remove_member(self._s.ai_keys_by_repo, key.repo_id, key_id)
        return True

    def add_event(self, event: SystemEvent) -> int:
        event_id = len(self._s.events) + 1
        event = replace(event, id=event_id)
        self._undo.append(self._s.events, event)
        by_org = self._s.events_by_org.get(event.org_id)
        if by_org is None:
            by_org = []
            self._undo.put(self._s.events_by_org, event.org_id, by_org)
        self._undo.append(by_org, event)
        return event_id

    def events(self) -> list[SystemEvent]:
        return list(reversed(self._s.events))

    def query_events(self, query: EventQuery) -> tuple[list[SystemEvent], int]:
        own = self._s.events_by_org.get(query.org_id, [])
        reads, reader = self._s.event_reads, query.unread_by
        matching = [
            e
            for e in reversed(own)
            if query.matches(e) and (reader is None or (e.id, reader) not in reads)
        ]
        return matching[query.skip : query.skip + query.take], len(matching)

    def mark_event_read(self, event_id: int, user_id: str) -> None:
        reads, read = self._s.event_reads, (event_id, user_id)
        if read not in reads:
            reads.add(read)
            self._undo.step(lambda: reads.discard(read))

    def events_read_by(self, user_id: str, event_ids: Collection[int]) -> set[int]:
        return {i for i in event_ids if (i, user_id) in self._s.event_reads}

    def setting(self, name: str) -> str | None:
        return self._s.settings.get(name)

    def put_setting_if_absent(self, name: str, value: str) -> str:
        if name not in self._s.settings:
            self._undo.put(self._s.settings, name, value)
        return self._s.settings[name]

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
            event_reads=[SystemEventRead(e, u) for e, u in sorted(self._s.event_reads)],
        )

    def clear(self) -> None:
        old = vars(self._s).copy()
        fresh = vars(_State())
        fresh["settings"] = self._s.settings
        vars(self._s).update(fresh)
        self._undo.step(lambda: vars(self._s).update(old))

    def is_empty(self) -> bool:
        return not self._s.organizations


class MemoryStore:
    """State in a Python object; one lock serialises transactions."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._state = _State()
        self._lock = threading.RLock()
        self._busy = 0

    @contextmanager
    def transaction(self) -> Iterator[MemoryUnitOfWork]:
        with self._lock:
            undo = _UndoLog()
            self._busy += 1
            try:
                yield MemoryUnitOfWork(self._state, undo)
            except BaseException:
                undo.rollback()
                raise
            finally:
                self._busy -= 1

    reading = transaction

    def may_wait(self, write: bool) -> bool:
        # Transactions are in-memory work; only a long one (an import) makes others wait.
        return self._busy > 0

    def data_version(self) -> None:
        # Reading the data itself is as cheap as a version would be.
        return None

    def close(self) -> None:
        """Nothing to release."""
