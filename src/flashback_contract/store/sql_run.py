"""How SQL statements run: SQLAlchemy writes them, once per dialect; this module executes them.

Every statement of the store is a SQLAlchemy Core construct built once, with named bind
parameters. Through a SQLAlchemy ``Connection`` a short SELECT costs some 100 microseconds of
Python around the database's few: on SQLite, the in-process default store, that was most of a
request. So on SQLite each statement is compiled once and runs on the ``sqlite3`` connection
itself, with the type processing SQLAlchemy would apply (``UtcDateTime`` to and from text).
PostgreSQL statements still run through SQLAlchemy, whose pool, schema translation (one schema
per session) and psycopg handling they need; only a long batch of a plain INSERT (a seed's
keys) goes by COPY on the same connection, in the same transaction.
"""

from __future__ import annotations

import mmap
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import psycopg
import sqlalchemy as sa
from psycopg import sql as psql
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.sql.expression import Executable

Params = Mapping[str, Any]
# Batches of a plain INSERT at least this long go to PostgreSQL by COPY (a seed's rows); a
# shorter one, a request's single row, stays one INSERT, one round trip.
COPY_FROM = 100


class PerDialect:
    """A statement whose SQL construct differs by dialect (``INSERT ... ON CONFLICT``)."""

    def __init__(self, build: Callable[[str], Executable]) -> None:
        self._build = build
        self._built: dict[str, Executable] = {}

    def of(self, dialect: str) -> Executable:
        built = self._built.get(dialect)
        if built is None:
            built = self._built[dialect] = self._build(dialect)
        return built


Statement = Executable | PerDialect


class Runner(Protocol):
    """Runs statements inside the transaction of one unit of work."""

    dialect: str

    def rows(self, statement: Statement, params: Params | None = None) -> list[Any]:
        """Every row, each with its columns as attributes."""
        ...

    def first(self, statement: Statement, params: Params | None = None) -> Any | None: ...
    def scalar(self, statement: Statement, params: Params | None = None) -> Any:
        """The first column of the first row (None if there is no row)."""
        ...

    def run(self, statement: Statement, params: Params | None = None) -> int:
        """Run a write; the number of rows it matched."""
        ...

    def run_many(self, statement: Statement, params: Sequence[Params]) -> None:
        """Run a write once per parameter set, as one batch."""
        ...


class AlchemyRunner:
    """Statements through a SQLAlchemy connection (PostgreSQL)."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection
        self.dialect = connection.dialect.name

    def _statement(self, statement: Statement) -> Executable:
        return statement.of(self.dialect) if isinstance(statement, PerDialect) else statement

    def rows(self, statement: Statement, params: Params | None = None) -> list[Any]:
        return list(self._c.execute(self._statement(statement), params).all())

    def first(self, statement: Statement, params: Params | None = None) -> Any | None:
        return self._c.execute(self._statement(statement), params).first()

    def scalar(self, statement: Statement, params: Params | None = None) -> Any:
        return self._c.execute(self._statement(statement), params).scalar()

    def run(self, statement: Statement, params: Params | None = None) -> int:
        return int(self._c.execute(self._statement(statement), params).rowcount)

    def run_many(self, statement: Statement, params: Sequence[Params]) -> None:
        if not params:
            return
        executable = self._statement(statement)
        if (
            self.dialect == "postgresql"
            and len(params) >= COPY_FROM
            and _copyable(executable, params[0].keys())
        ):
            self._copy(cast(sa.Insert, executable).table, params)
        else:
            self._c.execute(executable, list(params))

    def _copy(self, table: Any, params: Sequence[Params]) -> None:
        """Rows of a plain INSERT by PostgreSQL's COPY, in the same transaction: a seed's
        100,000 keys in a fraction of the time batched INSERTs take."""
        dialect = self._c.dialect
        columns = [(name, table.c[name].type.bind_processor(dialect)) for name in params[0]]
        translate = self._c.get_execution_options().get("schema_translate_map") or {}
        schema = translate.get(table.schema, table.schema)
        target = (
            psql.Identifier(table.name) if schema is None else psql.Identifier(schema, table.name)
        )
        names = psql.SQL(", ").join(psql.Identifier(table.c[name].name) for name, _ in columns)
        command = psql.SQL("COPY {} ({}) FROM STDIN").format(target, names)
        connection = cast(psycopg.Connection[Any], self._c.connection.driver_connection)
        try:
            with connection.cursor() as cursor, cursor.copy(command) as copy:
                for row in params:
                    copy.write_row([row[n] if f is None else f(row[n]) for n, f in columns])
        except psycopg.Error as exc:
            # As SQLAlchemy raises it for an INSERT (IntegrityError for a duplicate id...).
            raise sa.exc.DBAPIError.instance(
                command.as_string(connection), None, exc, psycopg.Error, dialect=dialect
            ) from exc


def _copyable(statement: Executable, names: Collection[str]) -> bool:
    """An INSERT of a table's columns from parameters alone: no RETURNING, no values or
    ON CONFLICT of its own, no column left to a default SQLAlchemy would fill in."""
    return (
        isinstance(statement, sa.Insert)
        and not statement._returning
        and not statement._values
        and not statement._multi_values
        and statement._post_values_clause is None
        and isinstance(statement.table, sa.Table)
        and all(c.default is None for c in statement.table.c if c.key not in names)
    )


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # Bind parameter names in the order of the SQL's "?" placeholders.
    names: tuple[str, ...]
    # Values of parameters the statement carries itself (LIMIT 1, say).
    defaults: dict[str, Any]
    bind: dict[str, Callable[[Any], Any]]
    row: Any
    read: tuple[Callable[[Any], Any] | None, ...]
    # Whether any column needs converting.
    reads: bool

    def values(self, params: Params | None) -> tuple[Any, ...]:
        given = (params or {}) if not self.defaults else {**self.defaults, **(params or {})}
        try:
            raw = [given[name] for name in self.names]
        except KeyError as exc:
            raise TypeError(f"no value for parameter {exc.args[0]!r} of: {self.sql}") from None
        if not self.bind:
            return tuple(raw)
        return tuple(
            value if (process := self.bind.get(name)) is None else process(value)
            for name, value in zip(self.names, raw, strict=True)
        )

    def make_row(self, values: Sequence[Any]) -> Any:
        if self.reads:
            values = [v if r is None else r(v) for r, v in zip(self.read, values, strict=True)]
        return self.row._make(values)


_compiled: dict[tuple[int, str, tuple[str, ...] | None], tuple[Executable, _Compiled]] = {}
_compile_lock = threading.Lock()


def _compile(statement: Executable, dialect: Dialect, keys: tuple[str, ...] | None) -> _Compiled:
    """Compile once per statement, dialect and (for INSERTs) set of columns given."""
    cache_key = (id(statement), dialect.name, keys)
    cached = _compiled.get(cache_key)
    if cached is not None and cached[0] is statement:
        return cached[1]
    compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys else None)  # type: ignore[attr-defined]
    names = tuple(compiled.positiontup or ())
    defaults: dict[str, Any] = {}
    bind: dict[str, Callable[[Any], Any]] = {}
    for parameter, name in compiled.bind_names.items():
        if not parameter.required:
            if parameter.value is None and keys is not None and name not in keys:
                # A column default SQLAlchemy fills in at execution: give every column here.
                raise TypeError(f"no value for column {name!r} of: {compiled.string}")
            defaults[name] = parameter.effective_value
        process = parameter.type.bind_processor(dialect)
        if process is not None:
            bind[name] = process
    columns = list(getattr(statement, "exported_columns", ()))
    row = namedtuple("Row", [str(c.key) for c in columns] or ["_"], rename=True)  # type: ignore[misc]
    read = tuple(c.type.result_processor(dialect, None) for c in columns)
    result = _Compiled(compiled.string, names, defaults, bind, row, read, any(read))
    with _compile_lock:
        # The statement is kept with its SQL, so its id is never reused for another.
        _compiled[cache_key] = (statement, result)
    return result


def _is_insert(statement: Executable) -> bool:
    return isinstance(statement, sa.Insert)


class SqliteRunner:
    """Statements compiled once and run on a ``sqlite3`` connection."""

    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection, dialect: Dialect) -> None:
        self._c = connection
        self._dialect = dialect

    def _prepare(
        self, statement: Statement, params: Params | None
    ) -> tuple[_Compiled, tuple[Any, ...]]:
        if isinstance(statement, PerDialect):
            statement = statement.of(self.dialect)
        keys = tuple(sorted(params)) if params and _is_insert(statement) else None
        compiled = _compile(statement, self._dialect, keys)
        return compiled, compiled.values(params)

    def rows(self, statement: Statement, params: Params | None = None) -> list[Any]:
        compiled, values = self._prepare(statement, params)
        return [compiled.make_row(row) for row in self._c.execute(compiled.sql, values)]

    def first(self, statement: Statement, params: Params | None = None) -> Any | None:
        compiled, values = self._prepare(statement, params)
        row = self._c.execute(compiled.sql, values).fetchone()
        return None if row is None else compiled.make_row(row)

    def scalar(self, statement: Statement, params: Params | None = None) -> Any:
        row = self.first(statement, params)
        return None if row is None else row[0]

    def run(self, statement: Statement, params: Params | None = None) -> int:
        compiled, values = self._prepare(statement, params)
        return int(self._c.execute(compiled.sql, values).rowcount)

    def run_many(self, statement: Statement, params: Sequence[Params]) -> None:
        if not params:
            return
        compiled, _ = self._prepare(statement, params[0])
        self._c.executemany(compiled.sql, (compiled.values(p) for p in params))


class SqliteConnections:
    """``sqlite3`` connections to one database, set up like the engine's, a few per thread.

    A thread reuses its connection from one transaction to the next; a transaction opened
    inside another on the same thread gets a connection of its own. ``:memory:`` has one
    connection (the engine's: it is the database), used by one thread at a time; a
    transaction opened inside another there joins it. With ``group_commit`` (the store's
    file) the writes of every thread run in turn on one connection instead (``GroupedWrite``).
    """

    def __init__(
        self,
        engine: Engine,
        setup: Callable[[sqlite3.Connection], None],
        *,
        group_commit: bool = False,
    ) -> None:
        self.dialect = engine.dialect
        database = engine.url.database
        self._path = database if database not in (None, "", ":memory:") else None
        self._setup = setup
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._shared: sqlite3.Connection | None = None
        self._shared_lock = threading.RLock()
        # This process's writers queue here, in turn, rather than in SQLite's busy handler,
        # which sleeps in growing steps (up to 100 ms) between tries: under a few concurrent
        # writers that sleep was most of a write's p99. Other processes still meet at the
        # file's own lock, which stays what makes writes safe.
        self.writers: threading.RLock | None = None if self._path is None else threading.RLock()
        # Group commit (a file's store): this process's writers share one connection, each
        # unit of work a savepoint in the transaction open on it, committed by the last
        # writer of the queue (bench/RESULTS.md: one sync to disk for several writes).
        self._grouped = group_commit and self._path is not None
        self._writer: sqlite3.Connection | None = None
        self._group: WriteGroup | None = None
        self._counting = threading.Lock()
        self._queued = 0
        if self._path is None:
            # The engine's single connection (StaticPool) holds the in-memory database.
            fairy = engine.raw_connection()
            self._shared = fairy.driver_connection
            self._fairy = fairy

    def _new(self) -> sqlite3.Connection:
        assert self._path is not None
        connection = sqlite3.connect(
            self._path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._setup(connection)
        with self._all_lock:
            self._all.append(connection)
        return connection

    def insert_alone(self, statement: Executable, params: Params) -> int:
        """One INSERT as a transaction of its own (SQLite's autocommit); the new row's id.

        The statement's own implicit transaction, without a BEGIN and a COMMIT of its own:
        the journal writes one row per request this way. Inside a transaction of this
        thread on the shared in-memory connection, the row joins that transaction.
        """
        compiled = _compile(statement, self.dialect, tuple(sorted(params)))
        values = compiled.values(params)
        if self.writers is not None:
            self.writers.acquire()
        try:
            connection = self.acquire()
            try:
                row_id = connection.execute(compiled.sql, values).lastrowid
            finally:
                self.release(connection)
        finally:
            if self.writers is not None:
                self.writers.release()
        assert row_id is not None
        return row_id

    def write_depth(self) -> int:
        """How many grouped writes this thread is inside."""
        depth: int = getattr(self._local, "write_depth", 0)
        return depth

    def transaction(self, begin: str) -> SqliteTransaction | GroupedWrite:
        """``begin`` (``BEGIN`` or ``BEGIN IMMEDIATE``), then COMMIT, or ROLLBACK on an error.

        With group commit a write's block ends once its group is committed: on return the
        write is on disk, as a transaction of its own would be; an error in the block undoes
        its own statements only, an error in the commit fails every write of the group.
        """
        if self._grouped and begin != "BEGIN":
            return GroupedWrite(self)
        return SqliteTransaction(self, begin)

    def acquire(self) -> sqlite3.Connection:
        if self._shared is not None:
            self._shared_lock.acquire()
            return self._shared
        free: list[sqlite3.Connection] | None = getattr(self._local, "free", None)
        if free is None:
            free = self._local.free = []
        return free.pop() if free else self._new()

    def release(self, connection: sqlite3.Connection) -> None:
        if self._shared is not None:
            self._shared_lock.release()
        else:
            self._local.free.append(connection)

    def close(self) -> None:
        with self._all_lock:
            for connection in self._all:
                connection.close()
            self._all.clear()
        if self._shared is not None:
            self._fairy.close()
            self._shared = None


# A group commits after this many writes even with more in the queue: none waits long.
MAX_GROUP = 32


class WriteGroup:
    """Writes that share a transaction: done once it is committed (or failed, ``error``)."""

    __slots__ = ("done", "error", "writes")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.writes = 0


class GroupedWrite:
    """One write of a group commit: a savepoint in the transaction open on the writers'
    connection. The writer that finds no other in the queue when it ends commits the group.

    In turn (the writers' lock), so a unit of work still sees the database alone, and under
    SQLite's write lock, which the open transaction holds, so other processes wait as they
    would for any writer.
    """

    __slots__ = ("_c", "_nested", "_writers")

    def __init__(self, connections: SqliteConnections) -> None:
        assert connections.writers is not None  # a file's connections always have the lock
        self._c = connections
        self._writers = connections.writers

    def __enter__(self) -> SqliteRunner:
        c = self._c
        with c._counting:
            c._queued += 1
        self._writers.acquire()
        with c._counting:
            c._queued -= 1
        # A write opened inside another on this thread (the lock is re-entrant) nests.
        self._nested = c.write_depth() > 0
        try:
            if c._writer is None:
                c._writer = c._new()
            writer = c._writer
            group = c._group
            if group is None:
                if writer.in_transaction:
                    # Left by a group whose commit and rollback both failed: nothing stays.
                    writer.execute("ROLLBACK")
                writer.execute("BEGIN IMMEDIATE")
                group = c._group = WriteGroup()
            writer.execute("SAVEPOINT unit")
            if not self._nested:
                group.writes += 1
        except BaseException:
            if self._nested:
                self._writers.release()
            else:
                self._end(failed=True)
            raise
        c._local.write_depth = c.write_depth() + 1
        return SqliteRunner(writer, c.dialect)

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        c = self._c
        writer = c._writer
        assert writer is not None
        c._local.write_depth = c.write_depth() - 1
        try:
            if exc_type is not None:
                writer.execute("ROLLBACK TO unit")
            writer.execute("RELEASE unit")
        except BaseException as error:
            # The transaction is in doubt: none of the group's writes stays.
            self._fail_group(error)
            raise
        if self._nested:
            self._writers.release()
            return
        self._end(failed=exc_type is not None)

    def _end(self, failed: bool) -> None:
        """Leave the group to the next writer in the queue, or commit it; then, for a write
        that succeeded, wait for the commit."""
        c = self._c
        group = c._group
        with c._counting:
            others = c._queued
        if group is None:
            self._writers.release()
            return
        if others and group.writes < MAX_GROUP:
            self._writers.release()
            if not failed:
                group.done.wait()
                if group.error is not None:
                    raise group.error
            return
        writer = c._writer
        assert writer is not None
        try:
            writer.execute("COMMIT")
        except BaseException as error:
            self._fail_group(error)
            if not failed:
                raise
            return
        c._group = None
        group.done.set()
        self._writers.release()

    def _fail_group(self, error: BaseException) -> None:
        c = self._c
        writer = c._writer
        group = c._group
        try:
            if writer is not None and writer.in_transaction:
                writer.execute("ROLLBACK")
        finally:
            c._group = None
            if group is not None:
                group.error = error
                group.done.set()
            self._writers.release()


class SqliteTransaction:
    """One transaction on a connection of ``SqliteConnections`` (a class, not a generator:
    every request opens one or two)."""

    __slots__ = ("_begin", "_connection", "_connections", "_joined", "_queue")

    def __init__(self, connections: SqliteConnections, begin: str) -> None:
        self._connections = connections
        self._begin = begin
        # Readers (plain BEGIN) never wait under WAL; writers take their turn in the process.
        self._queue = None if begin == "BEGIN" else connections.writers

    def __enter__(self) -> SqliteRunner:
        if self._queue is not None:
            self._queue.acquire()
        try:
            connection = self._connection = self._connections.acquire()
        except BaseException:
            self._dequeue()
            raise
        # Only the shared in-memory connection can already be in a transaction of this thread.
        self._joined = connection.in_transaction
        if not self._joined:
            try:
                connection.execute(self._begin)
            except BaseException:
                self._connections.release(connection)
                self._dequeue()
                raise
        return SqliteRunner(connection, self._connections.dialect)

    def _dequeue(self) -> None:
        if self._queue is not None:
            self._queue.release()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        connection = self._connection
        try:
            if not self._joined:
                try:
                    if exc_type is None:
                        connection.execute("COMMIT")
                finally:
                    # An error in the block or in COMMIT itself: nothing of the transaction stays.
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
        finally:
            self._connections.release(connection)
            self._dequeue()


# The WAL-index header at the start of a database's "-shm" file (https://sqlite.org/walformat.html,
# section 2.2): its first copy, 48 bytes, with a counter every committed transaction increments.
WAL_INDEX_HEADER = 48


class ChangeWatch:
    """Tells whether any connection but its own committed to a SQLite file since last asked.

    Its connection never writes, so every commit to the file counts, this process's own
    included. ``PRAGMA data_version`` answers that in a statement, but a statement in WAL mode
    takes and drops a read lock on the shared memory (two ``fcntl`` calls), some 10 us; the
    watch reads the WAL-index header from the shared-memory file instead, mapped once: every
    commit by any process rewrites it before the commit returns, so a commit acknowledged
    before the question is seen. A torn read (a writer halfway through) only counts as one more
    change. Without a "-shm" file (not in WAL mode) the watch asks the PRAGMA.
    """

    def __init__(self, path: str | Path) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # Held by the caller around changed() and what it reads after; version() takes it.
        self.lock = threading.Lock()
        self._seen: int | None = None
        # The first read opens (and, for the file's first connection, builds) the shared memory;
        # this connection then keeps it open, and its header in place, until close().
        self._connection.execute("PRAGMA data_version").fetchone()
        self._header: mmap.mmap | None = None
        self._last_header = b""
        self._changes = 0
        shm = Path(f"{path}-shm")
        if str(path) != ":memory:" and shm.exists() and shm.stat().st_size >= WAL_INDEX_HEADER:
            with open(shm, "rb") as file:
                self._header = mmap.mmap(file.fileno(), WAL_INDEX_HEADER, access=mmap.ACCESS_READ)

    def version(self) -> int:
        """The file's data version: another value after any commit since the last call."""
        with self.lock:
            return self._version()

    def _version(self) -> int:
        if self._header is None:
            (version,) = self._connection.execute("PRAGMA data_version").fetchone()
            return int(version)
        header = self._header[:]
        if header != self._last_header:
            self._last_header = header
            self._changes += 1
        return self._changes

    def changed(self) -> bool:
        version = self._version()
        changed = version != self._seen
        self._seen = version
        return changed

    def close(self) -> None:
        if self._header is not None:
            self._header.close()
            self._header = None
        self._connection.close()
