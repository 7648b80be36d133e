"""SQL adapter (SQLAlchemy Core): SQLite as the embedded default, PostgreSQL for shared use."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from flashback_contract.domain import (
    AiType,
    EventContext,
    EventType,
    Node,
    NodeKey,
    Organization,
    OrganizationKey,
    Provider,
    RepoAiApiKey,
    Repository,
    Role,
    SystemEvent,
    SystemEventRead,
    User,
)
from flashback_contract.store.base import Dataset, EventQuery
from flashback_contract.store.sql_run import (
    AlchemyRunner,
    ChangeWatch,
    GroupedWrite,
    PerDialect,
    Runner,
    SqliteConnections,
    SqliteTransaction,
)
from flashback_contract.store.versioning import migrate


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect, stored as ISO 8601 text."""

    impl = sa.String(40)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> str | None:
        # Fixed width, so text order is time order (event window queries compare text).
        return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")

    def process_result_value(self, value: str | None, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


metadata = sa.MetaData()

# Any constant will do (versioning.py's migration lock is another): it names the lock that
# processes seeding or replacing the whole state of one PostgreSQL database take in turn.
STATE_LOCK = 7_245_190_302

organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
)
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("org_id", sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("role", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255), nullable=False, default=""),
    sa.Column("email", sa.String(255), nullable=False, default=""),
    sa.Column("token", sa.String(512), unique=True),
)
repositories = sa.Table(
    "repositories",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("org_id", sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False, default=""),
)
organization_keys = sa.Table(
    "organization_keys",
    metadata,
    # seq orders keys by creation even when timestamps collide.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(128), nullable=False, unique=True),
    sa.Column("org_id", sa.ForeignKey("organizations.id"), nullable=False, index=True),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
node_keys = sa.Table(
    "node_keys",
    metadata,
    sa.Column(
        "key_id",
        sa.ForeignKey("organization_keys.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("node_id", sa.String(128), primary_key=True),
)
nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("ip", sa.String(64), primary_key=True),
    sa.Column("org_id", sa.String(128), nullable=False),
    sa.Column("key_id", sa.String(128), nullable=False),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("region", sa.String(128), nullable=False),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("status", sa.String(128), nullable=False),
    sa.Column("services", sa.BigInteger),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
node_signatures = sa.Table(
    "node_signatures",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    # Indexed: old records are pruned by this column.
    sa.Column("accepted_at", UtcDateTime, nullable=False, index=True),
)
repo_ai_api_keys = sa.Table(
    "repo_ai_api_keys",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(128), nullable=False, unique=True),
    sa.Column("repo_id", sa.ForeignKey("repositories.id"), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("key", sa.String(255)),
    sa.Column("ai_type", sa.String(16), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("deleted_at", UtcDateTime),
)
# A repository's active keys, newest first, without the keys deleted before them (they stay
# as rows: soft delete).
sa.Index(
    "repo_ai_api_keys_active",
    repo_ai_api_keys.c.repo_id,
    repo_ai_api_keys.c.seq,
    sqlite_where=repo_ai_api_keys.c.deleted_at.is_(None),
    postgresql_where=repo_ai_api_keys.c.deleted_at.is_(None),
)
system_events = sa.Table(
    "system_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("timestamp", UtcDateTime, nullable=False),
    sa.Column("context", sa.Integer, nullable=False),
    sa.Column("event", sa.Integer, nullable=False),
    sa.Column("org_id", sa.String(128), nullable=False, index=True),
    sa.Column("user_id", sa.String(128)),
    sa.Column("context_id", sa.String(128), nullable=False),
    sa.Column("json_data", sa.Text),
    sa.Column("workspace_id", sa.String(128)),
    # Unused: read state is per user, in system_event_reads. Kept (always false) so databases
    # created before keep accepting inserts.
    sa.Column("show_unread", sa.Boolean, nullable=False, default=False),
)
system_event_reads = sa.Table(
    "system_event_reads",
    metadata,
    sa.Column("event_id", sa.ForeignKey("system_events.id"), primary_key=True),
    sa.Column("user_id", sa.String(128), primary_key=True),
)


mock_settings = sa.Table(
    "mock_settings",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Flashback data, children before parents: the order clear() deletes in.
DATA_TABLES = (
    system_event_reads,
    system_events,
    node_signatures,
    node_keys,
    nodes,
    organization_keys,
    repo_ai_api_keys,
    repositories,
    users,
    organizations,
)


def _user(row: Any) -> User:
    return User(id=row.id, org_id=row.org_id, role=Role(row.role), name=row.name, email=row.email)


def _ai_key(row: Any) -> RepoAiApiKey:
    return RepoAiApiKey(
        id=row.id,
        repo_id=row.repo_id,
        name=row.name,
        key=row.key,
        ai_type=AiType(row.ai_type),
        secret_sha256=row.secret_sha256,
        created_at=row.created_at,
        deleted_at=row.deleted_at,
    )


def _event(row: Any) -> SystemEvent:
    return SystemEvent(
        id=row.id,
        timestamp=row.timestamp,
        context=EventContext(row.context),
        event=EventType(row.event),
        org_id=row.org_id,
        user_id=row.user_id,
        context_id=row.context_id,
        json_data=row.json_data,
        workspace_id=row.workspace_id,
    )


def _p(name: str, type_: Any = None) -> Any:
    return sa.bindparam(name, type_=type_)


def _insert_unless_present(table: sa.Table, returning: Any = None) -> PerDialect:
    """INSERT ... ON CONFLICT DO NOTHING in the dialect at hand; columns as the call gives."""

    def build(dialect: str) -> Any:
        insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
        statement = insert.on_conflict_do_nothing()
        return statement if returning is None else statement.returning(returning)

    return PerDialect(build)


# Every statement is built once (building and caching one costs more than SQLite running it).
_INSERT_ORGANIZATION = organizations.insert()
_INSERT_USER = users.insert()
_INSERT_REPOSITORY = repositories.insert()
_INSERT_ORG_KEY = organization_keys.insert()
_INSERT_AI_KEY = repo_ai_api_keys.insert()
_ORGANIZATION = organizations.select().where(organizations.c.id == _p("id"))
_USER = users.select().where(users.c.id == _p("id"))
_USER_BY_TOKEN = users.select().where(users.c.token == _p("token"))
_REPOSITORY = repositories.select().where(repositories.c.id == _p("id"))
# FOR UPDATE on PostgreSQL; SQLite renders none (its writers hold the write lock).
_LOCK_ORGANIZATION = (
    sa.select(organizations.c.id).where(organizations.c.id == _p("id")).with_for_update()
)
_LOCK_STATE = sa.select(sa.func.pg_advisory_xact_lock(STATE_LOCK))

_k = organization_keys.c
_ORG_KEYS = organization_keys.select().where(_k.org_id == _p("org_id")).order_by(_k.seq.desc())
_ORG_NODE_KEYS = (
    sa.select(node_keys.c.key_id, node_keys.c.node_id)
    .join(organization_keys, _k.id == node_keys.c.key_id)
    .where(_k.org_id == _p("org_id"))
    .order_by(node_keys.c.node_id)
)
_COUNT_ORG_KEYS = (
    sa.select(sa.func.count()).select_from(organization_keys).where(_k.org_id == _p("org_id"))
)
_OWNED_KEY = sa.and_(_k.id == _p("key_id"), _k.org_id == _p("org_id"))
_FIND_OWNED_KEY = sa.select(_k.id).where(_OWNED_KEY)
_DELETE_OWNED_KEY = organization_keys.delete().where(_OWNED_KEY)
_DELETE_ORG_KEYS = organization_keys.delete().where(_k.org_id == _p("org_id"))
# Explicit cascade: SQLite enforces ON DELETE only with a pragma per connection.
_DELETE_ORG_NODE_KEYS = node_keys.delete().where(
    node_keys.c.key_id.in_(sa.select(_k.id).where(_k.org_id == _p("org_id")))
)
_DELETE_KEY_NODE_KEYS = node_keys.delete().where(node_keys.c.key_id == _p("key_id"))
_DELETE_NODE_NODE_KEYS = node_keys.delete().where(node_keys.c.node_id == _p("ip"))
_KEY_EXISTS = sa.select(_k.id).where(_k.id == _p("key_id"))
_VERIFICATION_KEYS = organization_keys.select().order_by(_k.seq)
_ORG_VERIFICATION_KEYS = (
    organization_keys.select().where(_k.org_id == _p("org_id")).order_by(_k.seq)
)
_ADD_NODE_KEY = _insert_unless_present(node_keys)

_NODE = nodes.select().where(nodes.c.ip == _p("ip"))
_INSERT_NODE = _insert_unless_present(nodes, returning=nodes.c.ip)
_NODE_FIELDS = ("org_id", "key_id", "provider", "region", "version", "status", "services")
_UPDATE_NODE = (
    nodes.update()
    .where(nodes.c.ip == _p("node_ip"))
    # Bind names differ from the columns': SQLAlchemy keeps those for VALUES and SET.
    .values({name: _p(f"new_{name}") for name in (*_NODE_FIELDS, "updated_at")})
)
_DELETE_NODE = nodes.delete().where(nodes.c.ip == _p("ip"), nodes.c.org_id == _p("org_id"))
_NODE_IPS = sa.select(nodes.c.ip).order_by(nodes.c.ip)

_REMEMBER_SIGNATURE = _insert_unless_present(node_signatures, returning=node_signatures.c.digest)
_FORGET_SIGNATURES = node_signatures.delete().where(
    node_signatures.c.accepted_at < _p("before", UtcDateTime)
)

_a = repo_ai_api_keys.c
_ACTIVE_AI_KEY = sa.and_(_a.id == _p("key_id"), _a.deleted_at.is_(None))
_AI_KEYS = (
    repo_ai_api_keys.select()
    .where(_a.repo_id == _p("repo_id"), _a.deleted_at.is_(None))
    .order_by(_a.seq.desc())
)
_AI_KEY = repo_ai_api_keys.select().where(_a.id == _p("key_id"))
# FOR UPDATE waits for a racing rename or delete to commit, then reads what it left.
_AI_KEY_NAME_FOR_UPDATE = sa.select(_a.name).where(_ACTIVE_AI_KEY).with_for_update()
_RENAME_AI_KEY = repo_ai_api_keys.update().where(_ACTIVE_AI_KEY).values(name=_p("new_name"))
# Conditional on the row still being active: of racing deletes, one updates a row.
_SOFT_DELETE_AI_KEY = (
    repo_ai_api_keys.update().where(_ACTIVE_AI_KEY).values(deleted_at=_p("when", UtcDateTime))
)

_e = system_events.c
_ADD_EVENT = system_events.insert().returning(_e.id)
_EVENTS_NEWEST_FIRST = system_events.select().order_by(_e.id.desc())
_r = system_event_reads.c
_MARK_READ = _insert_unless_present(system_event_reads)
_READ_BETWEEN = sa.select(_r.event_id).where(
    _r.user_id == _p("user_id"), _r.event_id >= _p("low"), _r.event_id <= _p("high")
)

_SETTING = sa.select(mock_settings.c.value).where(mock_settings.c.name == _p("setting"))
_PUT_SETTING = _insert_unless_present(mock_settings)

_ALL = {
    "organizations": organizations.select().order_by(organizations.c.id),
    "users": users.select().order_by(users.c.id),
    "repositories": repositories.select().order_by(repositories.c.id),
    "ai_keys": repo_ai_api_keys.select().order_by(_a.seq),
    "events": system_events.select().order_by(_e.id),
    "event_reads": system_event_reads.select().order_by(_r.event_id, _r.user_id),
}
_CLEAR = tuple(table.delete() for table in DATA_TABLES)
_ANY_ORGANIZATION = sa.select(organizations.c.id).limit(1)

# Optional filters of an event query, by EventQuery field.
_EVENT_FILTERS = ("user_id", "context", "event", "context_id", "workspace_id")


@functools.cache
def _event_query(filters: tuple[str, ...], unread: bool) -> tuple[Any, Any]:
    """(count, page) statements for one combination of the optional filters."""
    conditions = [
        _e.org_id == _p("org_id"),
        # Timestamps are stored as ISO text in UTC, which sorts like time.
        _e.timestamp >= _p("since", UtcDateTime),
        _e.timestamp <= _p("until", UtcDateTime),
    ]
    conditions += [_e[name] == _p(name) for name in filters]
    if unread:
        conditions.append(~sa.exists().where(_r.event_id == _e.id, _r.user_id == _p("unread_by")))
    where = sa.and_(*conditions)
    count = sa.select(sa.func.count()).select_from(system_events).where(where)
    page = (
        system_events.select()
        .where(where)
        .order_by(_e.id.desc())
        .offset(_p("skip", sa.Integer))
        .limit(_p("take", sa.Integer))
    )
    return count, page


def _node(row: Any) -> Node:
    return Node(
        ip=row.ip,
        org_id=row.org_id,
        key_id=row.key_id,
        provider=Provider(row.provider),
        region=row.region,
        version=row.version,
        status=row.status,
        updated_at=row.updated_at,
        services=row.services,
    )


def _ai_key_row(key: RepoAiApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "repo_id": key.repo_id,
        "name": key.name,
        "key": key.key,
        "ai_type": key.ai_type.value,
        "secret_sha256": key.secret_sha256,
        "created_at": key.created_at,
        "deleted_at": key.deleted_at,
    }


class SqlUnitOfWork:
    def __init__(self, runner: Runner) -> None:
        self._x = runner

    def add_organization(self, organization: Organization) -> None:
        self._x.run(_INSERT_ORGANIZATION, {"id": organization.id, "name": organization.name})

    def add_user(self, user: User, token: str | None) -> None:
        self._x.run(
            _INSERT_USER,
            {
                "id": user.id,
                "org_id": user.org_id,
                "role": int(user.role),
                "name": user.name,
                "email": user.email,
                "token": token,
            },
        )

    def add_repository(self, repository: Repository) -> None:
        self._x.run(
            _INSERT_REPOSITORY,
            {"id": repository.id, "org_id": repository.org_id, "name": repository.name},
        )

    def organization(self, org_id: str) -> Organization | None:
        row = self._x.first(_ORGANIZATION, {"id": org_id})
        return None if row is None else Organization(id=row.id, name=row.name)

    def user(self, user_id: str) -> User | None:
        row = self._x.first(_USER, {"id": user_id})
        return None if row is None else _user(row)

    def user_by_token(self, token: str) -> User | None:
        row = self._x.first(_USER_BY_TOKEN, {"token": token})
        return None if row is None else _user(row)

    def repository(self, repo_id: str) -> Repository | None:
        row = self._x.first(_REPOSITORY, {"id": repo_id})
        return None if row is None else Repository(id=row.id, org_id=row.org_id, name=row.name)

    def lock_organization(self, org_id: str) -> None:
        # FOR UPDATE on PostgreSQL; SQLite already holds its write lock (BEGIN IMMEDIATE).
        if self._x.dialect == "postgresql":
            self._x.rows(_LOCK_ORGANIZATION, {"id": org_id})

    def lock_state(self) -> None:
        # A transaction-level advisory lock on PostgreSQL; SQLite's write lock is already held.
        if self._x.dialect == "postgresql":
            self._x.rows(_LOCK_STATE)

    def org_keys(self, org_id: str) -> list[OrganizationKey]:
        params = {"org_id": org_id}
        rows = self._x.rows(_ORG_KEYS, params)
        by_key: dict[str, list[NodeKey]] = {}
        for link in self._x.rows(_ORG_NODE_KEYS, params):
            by_key.setdefault(link.key_id, []).append(NodeKey(link.key_id, link.node_id))
        return [
            OrganizationKey(
                id=row.id,
                org_id=row.org_id,
                public_key=row.public_key,
                created_at=row.created_at,
                node_keys=tuple(by_key.get(row.id, ())),
            )
            for row in rows
        ]

    def count_org_keys(self, org_id: str) -> int:
        return int(self._x.scalar(_COUNT_ORG_KEYS, {"org_id": org_id}))

    def add_org_key(self, key: OrganizationKey) -> None:
        self._x.run(
            _INSERT_ORG_KEY,
            {
                "id": key.id,
                "org_id": key.org_id,
                "public_key": key.public_key,
                "created_at": key.created_at,
            },
        )
        for node_key in key.node_keys:
            self.add_node_key(node_key)

    def add_node_key(self, node_key: NodeKey) -> None:
        self._x.run(_ADD_NODE_KEY, {"key_id": node_key.key_id, "node_id": node_key.node_id})

    def delete_org_keys(self, org_id: str) -> int:
        self._x.run(_DELETE_ORG_NODE_KEYS, {"org_id": org_id})
        return self._x.run(_DELETE_ORG_KEYS, {"org_id": org_id})

    def delete_org_key(self, org_id: str, key_id: str) -> bool:
        owned = {"key_id": key_id, "org_id": org_id}
        if self._x.first(_FIND_OWNED_KEY, owned) is None:
            return False
        self._x.run(_DELETE_KEY_NODE_KEYS, {"key_id": key_id})
        # The row count, not the read above, decides: a racing delete may have won meanwhile.
        return bool(self._x.run(_DELETE_OWNED_KEY, owned))

    def verification_keys(self, org_id: str | None) -> list[OrganizationKey]:
        rows = (
            self._x.rows(_VERIFICATION_KEYS)
            if org_id is None
            else self._x.rows(_ORG_VERIFICATION_KEYS, {"org_id": org_id})
        )
        return [OrganizationKey(row.id, row.org_id, row.public_key, row.created_at) for row in rows]

    def node(self, ip: str) -> Node | None:
        row = self._x.first(_NODE, {"ip": ip})
        return None if row is None else _node(row)

    def save_node(self, node: Node) -> bool:
        values = {
            "org_id": node.org_id,
            "key_id": node.key_id,
            "provider": node.provider.value,
            "region": node.region,
            "version": node.version,
            "status": node.status,
            "services": node.services,
            "updated_at": node.updated_at,
        }
        # An upsert: racing first registrations insert once (the others wait, then update).
        inserted = self._x.first(_INSERT_NODE, {"ip": node.ip, **values})
        if inserted is None:
            self._x.run(
                _UPDATE_NODE,
                {"node_ip": node.ip, **{f"new_{name}": value for name, value in values.items()}},
            )
        self._x.run(_DELETE_NODE_NODE_KEYS, {"ip": node.ip})
        if self._x.first(_KEY_EXISTS, {"key_id": node.key_id}) is not None:
            self.add_node_key(NodeKey(node.key_id, node.ip))
        return inserted is not None

    def delete_node(self, ip: str, org_id: str) -> bool:
        deleted = self._x.run(_DELETE_NODE, {"ip": ip, "org_id": org_id})
        if deleted:
            self._x.run(_DELETE_NODE_NODE_KEYS, {"ip": ip})
        return bool(deleted)

    def remember_signature(self, digest: str, accepted_at: datetime) -> bool:
        # Two concurrent replays cannot both insert, nor fail with a 500.
        inserted = self._x.first(
            _REMEMBER_SIGNATURE, {"digest": digest, "accepted_at": accepted_at}
        )
        return inserted is not None

    def forget_signatures(self, accepted_before: datetime) -> int:
        return self._x.run(_FORGET_SIGNATURES, {"before": accepted_before})

    def ai_keys(self, repo_id: str) -> list[RepoAiApiKey]:
        return [_ai_key(row) for row in self._x.rows(_AI_KEYS, {"repo_id": repo_id})]

    def ai_key(self, key_id: str) -> RepoAiApiKey | None:
        row = self._x.first(_AI_KEY, {"key_id": key_id})
        return None if row is None else _ai_key(row)

    def add_ai_key(self, key: RepoAiApiKey) -> None:
        self.add_ai_keys([key])

    def add_ai_keys(self, keys: Sequence[RepoAiApiKey]) -> None:
        # One batch: a seed of 100,000 keys is one statement, not 100,000.
        self._x.run_many(_INSERT_AI_KEY, [_ai_key_row(key) for key in keys])

    def rename_ai_key(self, key_id: str, name: str) -> str | None:
        previous = self._x.first(_AI_KEY_NAME_FOR_UPDATE, {"key_id": key_id})
        if previous is None:
            return None
        self._x.run(_RENAME_AI_KEY, {"key_id": key_id, "new_name": name})
        return str(previous.name)

    def soft_delete_ai_key(self, key_id: str, deleted_at: datetime) -> bool:
        return bool(self._x.run(_SOFT_DELETE_AI_KEY, {"key_id": key_id, "when": deleted_at}))

    def add_event(self, event: SystemEvent) -> int:
        event_id = self._x.scalar(
            _ADD_EVENT,
            {
                "timestamp": event.timestamp,
                "context": int(event.context),
                "event": int(event.event),
                "org_id": event.org_id,
                "user_id": event.user_id,
                "context_id": event.context_id,
                "json_data": event.json_data,
                "workspace_id": event.workspace_id,
                "show_unread": False,
            },
        )
        return int(event_id)

    def events(self) -> list[SystemEvent]:
        return [_event(row) for row in self._x.rows(_EVENTS_NEWEST_FIRST)]

    def query_events(self, query: EventQuery) -> tuple[list[SystemEvent], int]:
        optional = {
            "user_id": query.user_id,
            "context": None if query.context is None else int(query.context),
            "event": None if query.event is None else int(query.event),
            "context_id": query.context_id,
            "workspace_id": query.workspace_id,
        }
        present = {name: value for name, value in optional.items() if value is not None}
        count, page = _event_query(
            tuple(name for name in _EVENT_FILTERS if name in present), query.unread_by is not None
        )
        params: dict[str, Any] = {
            "org_id": query.org_id,
            "since": query.since,
            "until": query.until,
            **present,
        }
        if query.unread_by is not None:
            params["unread_by"] = query.unread_by
        total = self._x.scalar(count, params)
        rows = self._x.rows(page, {**params, "skip": query.skip, "take": query.take})
        return [_event(row) for row in rows], int(total)

    def mark_event_read(self, event_id: int, user_id: str) -> None:
        self._x.run(_MARK_READ, {"event_id": event_id, "user_id": user_id})

    def events_read_by(self, user_id: str, event_ids: Collection[int]) -> set[int]:
        if not event_ids:
            return set()
        # One range read for a page of ids, narrowed here (no statement per list length).
        wanted = set(event_ids)
        rows = self._x.rows(
            _READ_BETWEEN, {"user_id": user_id, "low": min(wanted), "high": max(wanted)}
        )
        return {int(row.event_id) for row in rows} & wanted

    def setting(self, name: str) -> str | None:
        value = self._x.scalar(_SETTING, {"setting": name})
        return None if value is None else str(value)

    def put_setting_if_absent(self, name: str, value: str) -> str:
        self._x.run(_PUT_SETTING, {"name": name, "value": value})
        stored = self.setting(name)
        assert stored is not None
        return stored

    def everything(self) -> Dataset:
        orgs = [Organization(row.id, row.name) for row in self._x.rows(_ALL["organizations"])]
        return Dataset(
            organizations=orgs,
            users=[(_user(row), row.token) for row in self._x.rows(_ALL["users"])],
            repositories=[
                Repository(row.id, row.org_id, row.name)
                for row in self._x.rows(_ALL["repositories"])
            ],
            org_keys=[k for org in orgs for k in reversed(self.org_keys(org.id))],
            nodes=[
                node for row in self._x.rows(_NODE_IPS) if (node := self.node(row.ip)) is not None
            ],
            ai_keys=[_ai_key(row) for row in self._x.rows(_ALL["ai_keys"])],
            events=[_event(row) for row in self._x.rows(_ALL["events"])],
            event_reads=[
                SystemEventRead(int(row.event_id), row.user_id)
                for row in self._x.rows(_ALL["event_reads"])
            ],
        )

    def clear(self) -> None:
        for delete in _CLEAR:
            self._x.run(delete)

    def is_empty(self) -> bool:
        return self._x.first(_ANY_ORGANIZATION) is None


def sqlite_setup(in_memory: bool) -> Callable[[Any], None]:
    """How every SQLite connection starts, the engine's and the store's own alike."""

    def setup(dbapi_connection: Any) -> None:
        # Transactions start as the store says (BEGIN or BEGIN IMMEDIATE), not implicitly.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            # Every commit reaches the disk before it is acknowledged: an acknowledged write
            # survives the process being killed and the machine losing power.
            cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return setup


def _sqlite_engine(url: sa.URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        # One shared connection, or each thread would see its own empty database.
        poolclass=sa.pool.StaticPool if in_memory else None,
    )
    setup = sqlite_setup(in_memory)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        setup(dbapi_connection)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Schema changes (migrations, drop_all) take the write lock up front.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class _SqliteUnit:
    """A unit of work in a SQLite transaction."""

    __slots__ = ("_transaction",)

    def __init__(self, transaction: SqliteTransaction | GroupedWrite) -> None:
        self._transaction = transaction

    def __enter__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._transaction.__enter__())

    def __exit__(self, *exc: Any) -> None:
        self._transaction.__exit__(*exc)


class SqlStore:
    """SQLite or PostgreSQL; opening one migrates its schema to the newest.

    SQLAlchemy owns the schema (migrations) and the PostgreSQL connections; SQLite statements
    run on the store's own ``sqlite3`` connections (store/sql_run.py says why).

    With ``engine`` and ``schema`` the store lives in that PostgreSQL schema of a shared engine
    (a session's copy of the state), its tables named as usual. ``create_tables=False`` trusts
    that they exist (a copy of a store that has them).
    """

    def __init__(
        self,
        url: str,
        *,
        engine: Engine | None = None,
        schema: str | None = None,
        create_tables: bool = True,
    ) -> None:
        self.url = url
        self._owns_engine = engine is None
        self._schema = schema
        self._engine = engine if engine is not None else create_engine(url)
        # SQLite is a file in this process; PostgreSQL is a network round trip per statement.
        self._in_process = self._engine.dialect.name == "sqlite"
        if create_tables and schema is None:
            migrate(self._engine, url)
        elif create_tables:
            # A session's schema: a copy of the seed for a test run, made at the newest tables.
            with self._connect() as conn:
                metadata.create_all(conn)
        database = self._engine.url.database
        in_memory = database in (None, "", ":memory:")
        self._sqlite = (
            SqliteConnections(self._engine, sqlite_setup(in_memory), group_commit=True)
            if self._in_process
            else None
        )
        # A file's commits show in its data version; the in-memory database's are made on the
        # one connection it has, whose own commits do not.
        self._watch = ChangeWatch(str(database)) if self._in_process and not in_memory else None

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            if self._schema is not None:
                conn.execution_options(schema_translate_map={None: self._schema})
            yield conn

    def _unit(self, begin: str) -> AbstractContextManager[SqlUnitOfWork]:
        if self._sqlite is not None:
            return _SqliteUnit(self._sqlite.transaction(begin))
        return self._alchemy_unit()

    @contextmanager
    def _alchemy_unit(self) -> Iterator[SqlUnitOfWork]:
        with self._connect() as conn:
            yield SqlUnitOfWork(AlchemyRunner(conn))

    def transaction(self) -> AbstractContextManager[SqlUnitOfWork]:
        # SQLite writers take the write lock up front: read-then-write transactions (quota)
        # stay atomic.
        return self._unit("BEGIN IMMEDIATE")

    def reading(self) -> AbstractContextManager[SqlUnitOfWork]:
        # SQLite readers take none: under WAL they see a snapshot and never wait.
        return self._unit("BEGIN")

    def may_wait(self, write: bool) -> bool:
        # SQLite writers queue for the file's write lock; its readers never wait.
        return write or not self._in_process

    def data_version(self) -> int | None:
        # PostgreSQL has no cheap equivalent: None, and callers read.
        return None if self._watch is None else self._watch.version()

    def drop_all(self) -> None:
        """Remove every table, the schema's version included (tests and reset)."""
        with self._connect() as conn:
            metadata.drop_all(conn)
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._sqlite is not None:
            self._sqlite.close()
        if self._owns_engine:
            self._engine.dispose()


def create_engine(url: str) -> Engine:
    """The engine a store URL names: SQLite tuned for one writer at a time, or PostgreSQL."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True)
