"""SQL adapter (SQLAlchemy Core): SQLite as the embedded default, PostgreSQL for shared use."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
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


class SqlUnitOfWork:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def _insert_unless_present(self, table: sa.Table, **values: Any) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING in the dialect at hand."""
        dialect_insert = pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert
        return dialect_insert(table).values(**values).on_conflict_do_nothing()

    def add_organization(self, organization: Organization) -> None:
        self._c.execute(organizations.insert().values(id=organization.id, name=organization.name))

    def add_user(self, user: User, token: str | None) -> None:
        self._c.execute(
            users.insert().values(
                id=user.id,
                org_id=user.org_id,
                role=int(user.role),
                name=user.name,
                email=user.email,
                token=token,
            )
        )

    def add_repository(self, repository: Repository) -> None:
        self._c.execute(
            repositories.insert().values(
                id=repository.id, org_id=repository.org_id, name=repository.name
            )
        )

    def organization(self, org_id: str) -> Organization | None:
        row = self._c.execute(organizations.select().where(organizations.c.id == org_id)).first()
        return None if row is None else Organization(id=row.id, name=row.name)

    def user(self, user_id: str) -> User | None:
        row = self._c.execute(users.select().where(users.c.id == user_id)).first()
        return None if row is None else _user(row)

    def user_by_token(self, token: str) -> User | None:
        row = self._c.execute(users.select().where(users.c.token == token)).first()
        return None if row is None else _user(row)

    def repository(self, repo_id: str) -> Repository | None:
        row = self._c.execute(repositories.select().where(repositories.c.id == repo_id)).first()
        return None if row is None else Repository(id=row.id, org_id=row.org_id, name=row.name)

    def lock_organization(self, org_id: str) -> None:
        # FOR UPDATE on PostgreSQL; SQLite already holds its write lock (BEGIN IMMEDIATE).
        self._c.execute(
            sa.select(organizations.c.id).where(organizations.c.id == org_id).with_for_update()
        )

    def lock_state(self) -> None:
        # A transaction-level advisory lock on PostgreSQL; SQLite's write lock is already held.
        if self._c.dialect.name == "postgresql":
            self._c.execute(sa.select(sa.func.pg_advisory_xact_lock(STATE_LOCK)))

    def org_keys(self, org_id: str) -> list[OrganizationKey]:
        rows = self._c.execute(
            organization_keys.select()
            .where(organization_keys.c.org_id == org_id)
            .order_by(organization_keys.c.seq.desc())
        ).all()
        links = self._c.execute(
            sa.select(node_keys.c.key_id, node_keys.c.node_id)
            .join(organization_keys, organization_keys.c.id == node_keys.c.key_id)
            .where(organization_keys.c.org_id == org_id)
            .order_by(node_keys.c.node_id)
        ).all()
        by_key: dict[str, list[NodeKey]] = {}
        for link in links:
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
        return int(
            self._c.execute(
                sa.select(sa.func.count())
                .select_from(organization_keys)
                .where(organization_keys.c.org_id == org_id)
            ).scalar_one()
        )

    def add_org_key(self, key: OrganizationKey) -> None:
        self._c.execute(
            organization_keys.insert().values(
                id=key.id, org_id=key.org_id, public_key=key.public_key, created_at=key.created_at
            )
        )
        for node_key in key.node_keys:
            self.add_node_key(node_key)

    def add_node_key(self, node_key: NodeKey) -> None:
        self._c.execute(
            self._insert_unless_present(node_keys, key_id=node_key.key_id, node_id=node_key.node_id)
        )

    def delete_org_keys(self, org_id: str) -> int:
        key_ids = sa.select(organization_keys.c.id).where(organization_keys.c.org_id == org_id)
        # Explicit cascade: SQLite enforces ON DELETE only with a pragma per connection.
        self._c.execute(node_keys.delete().where(node_keys.c.key_id.in_(key_ids)))
        result = self._c.execute(
            organization_keys.delete().where(organization_keys.c.org_id == org_id)
        )
        return int(result.rowcount)

    def delete_org_key(self, org_id: str, key_id: str) -> bool:
        owned = sa.and_(organization_keys.c.id == key_id, organization_keys.c.org_id == org_id)
        if self._c.execute(sa.select(organization_keys.c.id).where(owned)).first() is None:
            return False
        self._c.execute(node_keys.delete().where(node_keys.c.key_id == key_id))
        # The row count, not the read above, decides: a racing delete may have won meanwhile.
        return bool(self._c.execute(organization_keys.delete().where(owned)).rowcount)

    def verification_keys(self, org_id: str | None) -> list[OrganizationKey]:
        query = organization_keys.select().order_by(organization_keys.c.seq)
        if org_id is not None:
            query = query.where(organization_keys.c.org_id == org_id)
        return [
            OrganizationKey(row.id, row.org_id, row.public_key, row.created_at)
            for row in self._c.execute(query)
        ]

    def node(self, ip: str) -> Node | None:
        row = self._c.execute(nodes.select().where(nodes.c.ip == ip)).first()
        if row is None:
            return None
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
        inserted = self._c.execute(
            self._insert_unless_present(nodes, ip=node.ip, **values).returning(nodes.c.ip)
        ).first()
        if inserted is None:
            self._c.execute(nodes.update().where(nodes.c.ip == node.ip).values(**values))
        self._c.execute(node_keys.delete().where(node_keys.c.node_id == node.ip))
        key_exists = self._c.execute(
            sa.select(organization_keys.c.id).where(organization_keys.c.id == node.key_id)
        ).first()
        if key_exists is not None:
            self.add_node_key(NodeKey(node.key_id, node.ip))
        return inserted is not None

    def delete_node(self, ip: str, org_id: str) -> bool:
        deleted = self._c.execute(
            nodes.delete().where(nodes.c.ip == ip, nodes.c.org_id == org_id)
        ).rowcount
        if deleted:
            self._c.execute(node_keys.delete().where(node_keys.c.node_id == ip))
        return bool(deleted)

    def remember_signature(self, digest: str, accepted_at: datetime) -> bool:
        # Two concurrent replays cannot both insert, nor fail with a 500.
        inserted = self._c.execute(
            self._insert_unless_present(
                node_signatures, digest=digest, accepted_at=accepted_at
            ).returning(node_signatures.c.digest)
        ).first()
        return inserted is not None

    def forget_signatures(self, accepted_before: datetime) -> int:
        result = self._c.execute(
            node_signatures.delete().where(node_signatures.c.accepted_at < accepted_before)
        )
        return int(result.rowcount)

    def ai_keys(self, repo_id: str) -> list[RepoAiApiKey]:
        rows = self._c.execute(
            repo_ai_api_keys.select()
            .where(repo_ai_api_keys.c.repo_id == repo_id, repo_ai_api_keys.c.deleted_at.is_(None))
            .order_by(repo_ai_api_keys.c.seq.desc())
        ).all()
        return [_ai_key(row) for row in rows]

    def ai_key(self, key_id: str) -> RepoAiApiKey | None:
        row = self._c.execute(
            repo_ai_api_keys.select().where(repo_ai_api_keys.c.id == key_id)
        ).first()
        return None if row is None else _ai_key(row)

    def add_ai_key(self, key: RepoAiApiKey) -> None:
        self.add_ai_keys([key])

    def add_ai_keys(self, keys: Sequence[RepoAiApiKey]) -> None:
        if not keys:
            return
        # One executemany: a seed of 100,000 keys is one statement, not 100,000.
        self._c.execute(
            repo_ai_api_keys.insert(),
            [
                {
                    "id": key.id,
                    "repo_id": key.repo_id,
                    "name": key.name,
                    "key": key.key,
                    "ai_type": key.ai_type.value,
                    "secret_sha256": key.secret_sha256,
                    "created_at": key.created_at,
                    "deleted_at": key.deleted_at,
                }
                for key in keys
            ],
        )

    def rename_ai_key(self, key_id: str, name: str) -> str | None:
        active = sa.and_(repo_ai_api_keys.c.id == key_id, repo_ai_api_keys.c.deleted_at.is_(None))
        # FOR UPDATE waits for a racing rename or delete to commit, then reads what it left.
        previous = self._c.execute(
            sa.select(repo_ai_api_keys.c.name).where(active).with_for_update()
        ).first()
        if previous is None:
            return None
        self._c.execute(repo_ai_api_keys.update().where(active).values(name=name))
        return str(previous.name)

    def soft_delete_ai_key(self, key_id: str, deleted_at: datetime) -> bool:
        # Conditional on the row still being active: of racing deletes, one updates a row.
        result = self._c.execute(
            repo_ai_api_keys.update()
            .where(repo_ai_api_keys.c.id == key_id, repo_ai_api_keys.c.deleted_at.is_(None))
            .values(deleted_at=deleted_at)
        )
        return bool(result.rowcount)

    def add_event(self, event: SystemEvent) -> int:
        result = self._c.execute(
            system_events.insert().values(
                timestamp=event.timestamp,
                context=int(event.context),
                event=int(event.event),
                org_id=event.org_id,
                user_id=event.user_id,
                context_id=event.context_id,
                json_data=event.json_data,
                workspace_id=event.workspace_id,
            )
        )
        primary_key = result.inserted_primary_key
        assert primary_key is not None
        return int(primary_key[0])

    def events(self) -> list[SystemEvent]:
        rows = self._c.execute(system_events.select().order_by(system_events.c.id.desc())).all()
        return [_event(row) for row in rows]

    def query_events(self, query: EventQuery) -> tuple[list[SystemEvent], int]:
        t = system_events
        conditions = [t.c.org_id == query.org_id]
        # Timestamps are stored as ISO text in UTC, which sorts like time.
        conditions += [
            t.c.timestamp >= query.since,
            t.c.timestamp <= query.until,
        ]
        optional = {
            t.c.user_id: query.user_id,
            t.c.context: None if query.context is None else int(query.context),
            t.c.event: None if query.event is None else int(query.event),
            t.c.context_id: query.context_id,
            t.c.workspace_id: query.workspace_id,
        }
        conditions += [column == value for column, value in optional.items() if value is not None]
        if query.unread_by is not None:
            r = system_event_reads
            conditions.append(
                ~sa.exists().where(r.c.event_id == t.c.id, r.c.user_id == query.unread_by)
            )
        where = sa.and_(*conditions)
        total = self._c.execute(sa.select(sa.func.count()).select_from(t).where(where)).scalar_one()
        rows = self._c.execute(
            t.select().where(where).order_by(t.c.id.desc()).offset(query.skip).limit(query.take)
        ).all()
        return [_event(row) for row in rows], int(total)

    def mark_event_read(self, event_id: int, user_id: str) -> None:
        self._c.execute(
            self._insert_unless_present(system_event_reads, event_id=event_id, user_id=user_id)
        )

    def events_read_by(self, user_id: str, event_ids: Collection[int]) -> set[int]:
        if not event_ids:
            return set()
        r = system_event_reads
        rows = self._c.execute(
            sa.select(r.c.event_id).where(r.c.user_id == user_id, r.c.event_id.in_(event_ids))
        )
        return {int(row.event_id) for row in rows}

    def setting(self, name: str) -> str | None:
        row = self._c.execute(
            sa.select(mock_settings.c.value).where(mock_settings.c.name == name)
        ).first()
        return None if row is None else str(row.value)

    def put_setting_if_absent(self, name: str, value: str) -> str:
        self._c.execute(self._insert_unless_present(mock_settings, name=name, value=value))
        stored = self.setting(name)
        assert stored is not None
        return stored

    def everything(self) -> Dataset:
        orgs = [
            Organization(row.id, row.name)
            for row in self._c.execute(organizations.select().order_by(organizations.c.id))
        ]
        return Dataset(
            organizations=orgs,
            users=[
                (_user(row), row.token)
                for row in self._c.execute(users.select().order_by(users.c.id))
            ],
            repositories=[
                Repository(row.id, row.org_id, row.name)
                for row in self._c.execute(repositories.select().order_by(repositories.c.id))
            ],
            org_keys=[k for org in orgs for k in reversed(self.org_keys(org.id))],
            nodes=[
                node
                for row in self._c.execute(sa.select(nodes.c.ip).order_by(nodes.c.ip))
                if (node := self.node(row.ip)) is not None
            ],
            ai_keys=[
                _ai_key(row)
                for row in self._c.execute(
                    repo_ai_api_keys.select().order_by(repo_ai_api_keys.c.seq)
                )
            ],
            events=[
                _event(row)
                for row in self._c.execute(system_events.select().order_by(system_events.c.id))
            ],
            event_reads=[
                SystemEventRead(int(row.event_id), row.user_id)
                for row in self._c.execute(
                    system_event_reads.select().order_by(
                        system_event_reads.c.event_id, system_event_reads.c.user_id
                    )
                )
            ],
        )

    def clear(self) -> None:
        for table in DATA_TABLES:
            self._c.execute(table.delete())

    def is_empty(self) -> bool:
        return self._c.execute(sa.select(organizations.c.id).limit(1)).first() is None


READ_ONLY = "flashback_read_only"


def _sqlite_engine(url: sa.URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        # One shared connection, or each thread would see its own empty database.
        poolclass=sa.pool.StaticPool if in_memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start.
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

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: read-then-write transactions (quota) stay
        # atomic. Readers take none: under WAL they see a snapshot and never wait.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class SqlStore:
    """SQLite or PostgreSQL through SQLAlchemy; opening one migrates its schema to the newest.

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

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            if self._schema is not None:
                conn.execution_options(schema_translate_map={None: self._schema})
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[SqlUnitOfWork]:
        with self._connect() as conn:
            yield SqlUnitOfWork(conn)

    @contextmanager
    def reading(self) -> Iterator[SqlUnitOfWork]:
        with self._engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            if self._schema is not None:
                conn.execution_options(schema_translate_map={None: self._schema})
            with conn.begin():
                yield SqlUnitOfWork(conn)

    def may_wait(self, write: bool) -> bool:
        # SQLite writers queue for the file's write lock; its readers never wait.
        return write or not self._in_process

    def drop_all(self) -> None:
        """Remove every table, the schema's version included (tests and reset)."""
        with self._connect() as conn:
            metadata.drop_all(conn)
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))

    def close(self) -> None:
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
