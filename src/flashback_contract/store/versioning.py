"""The schema's version: Alembic migrations shipped in the package, applied when a store opens."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

SCRIPT_LOCATION = "flashback_contract.store:migrations"
# The schema flashback-contract 0.1.0 created, before it kept a version.
FIRST_REVISION = "0001"
# Any constant will do: processes opening one PostgreSQL database migrate it in turn.
MIGRATION_LOCK = 7_245_190_301


class SchemaVersionError(RuntimeError):
    """The database's schema is newer than this version of flashback-contract knows."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None if it has no version table."""
    return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, url: str) -> None:
    """Bring the database to the newest revision, in one transaction.

    An empty database is created from scratch; one written by 0.1.0 (tables, no version) is
    recognised as the first revision; one at a revision this version does not know was
    written by a newer version, and is refused with SchemaVersionError.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        config = _config(connection)
        script = ScriptDirectory.from_config(config)
        current = current_revision(connection)
        if current is None and sa.inspect(connection).has_table("organizations"):
            # Tables without a version: written by 0.1.0, whose schema is the first revision.
            command.stamp(config, FIRST_REVISION)
            current = FIRST_REVISION
        elif current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise SchemaVersionError(
                f"the database at {url} has schema revision {current!r}, which this "
                f"flashback-contract does not know (its newest is {script.get_current_head()!r}): "
                "it was written by a newer version. Run that version, or use another database."
            )
        command.upgrade(config, "head")
        head = script.get_current_head()
        if current is not None and current != head:
            log.info("schema of %s migrated from revision %s to %s", url, current, head)
