"""The SQLite store's own connections: this process's writers take turns, readers never wait."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flashback_contract.store.sql import create_engine, sqlite_setup
from flashback_contract.store.sql_run import MAX_GROUP, ChangeWatch, SqliteConnections

COUNT = sa.text("SELECT count(*) FROM t")
INSERT = sa.text("INSERT INTO t (v) VALUES (:v)")
T = sa.Table("t", sa.MetaData(), sa.Column("v", sa.Integer, nullable=False))


@pytest.fixture
def connections(tmp_path: Path) -> Iterator[SqliteConnections]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER NOT NULL)")
    setup = sqlite_setup(in_memory=False)

    def impatient(connection: Any) -> None:
        setup(connection)
        # SQLite's own wait for the file's lock, far shorter than a writer below holds it.
        connection.execute("PRAGMA busy_timeout=50")

    result = SqliteConnections(engine, impatient)
    yield result
    result.close()
    engine.dispose()


def _in_thread(work: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _write_in_a_transaction(connections: SqliteConnections) -> None:
    with connections.transaction("BEGIN IMMEDIATE") as x:
        x.run(INSERT, {"v": 2})


def _insert_alone(connections: SqliteConnections) -> None:
    connections.insert_alone(T.insert(), {"v": 2})


@pytest.mark.parametrize(
    "second_writer",
    [_write_in_a_transaction, _insert_alone],
    ids=["a transaction", "a row inserted alone"],
)
def test_a_writer_waits_its_turn_however_long_the_one_before_it_holds_the_lock(
    connections: SqliteConnections, second_writer: Callable[[SqliteConnections], None]
) -> None:
    """Without the process's queue, the second writer gives up after SQLite's busy timeout."""
    with connections.transaction("BEGIN IMMEDIATE") as x:
        x.run(INSERT, {"v": 1})
        thread, errors = _in_thread(lambda: second_writer(connections))
        thread.join(0.5)  # ten times the busy timeout
        assert thread.is_alive()
    thread.join(10)

    assert errors == []
    with connections.transaction("BEGIN") as x:
        assert x.scalar(COUNT) == 2


def test_a_reader_does_not_wait_for_the_writers_queue(connections: SqliteConnections) -> None:
    seen: list[int] = []

    def reader() -> None:
        with connections.transaction("BEGIN") as x:
            seen.append(x.scalar(COUNT))

    with connections.transaction("BEGIN IMMEDIATE") as x:
        x.run(INSERT, {"v": 1})
        thread, errors = _in_thread(reader)
        thread.join(10)
        # Finished while the writer is still open, and saw the last committed state.
        assert not thread.is_alive()

    assert errors == []
    assert seen == [0]


def test_a_failed_begin_leaves_the_queue_free(
    connections: SqliteConnections, tmp_path: Path
) -> None:
    """Another process holds the file's lock past the busy timeout: this writer fails, and
    the next one of this process is not stuck behind it."""
    holder = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with (
            pytest.raises(sqlite3.OperationalError, match="locked"),
            connections.transaction("BEGIN IMMEDIATE"),
        ):
            pass
    finally:
        holder.rollback()
        holder.close()

    def next_writer() -> None:
        with connections.transaction("BEGIN IMMEDIATE") as x:
            x.run(INSERT, {"v": 1})

    thread, errors = _in_thread(next_writer)
    thread.join(10)
    assert not thread.is_alive()
    assert errors == []


def test_a_row_inserted_alone_is_committed_at_once_and_its_id_returned(
    connections: SqliteConnections, tmp_path: Path
) -> None:
    first = connections.insert_alone(T.insert(), {"v": 1})
    second = connections.insert_alone(T.insert(), {"v": 2})

    assert second == first + 1
    # Another connection, as another process would open, sees both rows: nothing is pending.
    other = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        assert other.execute("SELECT rowid, v FROM t ORDER BY rowid").fetchall() == [
            (first, 1),
            (second, 2),
        ]
    finally:
        other.close()


def test_a_failed_insert_alone_writes_nothing_and_leaves_the_queue_free(
    connections: SqliteConnections,
) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        connections.insert_alone(T.insert(), {"v": None})

    thread, errors = _in_thread(lambda: connections.insert_alone(T.insert(), {"v": 3}))
    thread.join(10)
    assert not thread.is_alive()
    assert errors == []
    with connections.transaction("BEGIN") as x:
        assert x.scalar(COUNT) == 1


def _database(path: Path, journal_mode: str) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA journal_mode={journal_mode}")
    connection.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL)")
    connection.close()


def _commit_in_another_process(path: Path, statement: str) -> None:
    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2])"
    code += "; c.commit()"
    subprocess.run([sys.executable, "-c", code, str(path), statement], check=True)


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_the_change_watch_sees_every_commit_of_any_connection_or_process(
    tmp_path: Path, journal_mode: str
) -> None:
    """In WAL mode the watch reads the shared memory's header; in the rollback-journal mode it
    asks ``PRAGMA data_version``: both see each commit, and nothing when nothing committed."""
    path = tmp_path / "watched.sqlite3"
    _database(path, journal_mode)
    # A connection of this process that stays open, as the store's own do.
    writer = sqlite3.connect(path, isolation_level=None)
    watch = ChangeWatch(path)
    try:
        assert watch.changed()  # the first answer: nothing seen before
        assert not watch.changed()
        for n in range(30):
            writer.execute("INSERT INTO t (v) VALUES (?)", (n,))
            assert watch.changed(), n
            assert not watch.changed(), n
        with writer:
            writer.execute("SELECT count(*) FROM t").fetchone()
        assert not watch.changed()  # a read commits nothing
        _commit_in_another_process(path, "INSERT INTO t (v) VALUES (100)")
        assert watch.changed()
        assert not watch.changed()
        # A checkpoint that empties the WAL, then a commit that starts writing it again from
        # its start: the commit is still seen.
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        watch.changed()
        _commit_in_another_process(path, "INSERT INTO t (v) VALUES (101)")
        assert watch.changed()
        writer.execute("DELETE FROM t WHERE v = 101")
        assert watch.changed()
        assert watch.version() == watch.version()
    finally:
        watch.close()
        writer.close()


def test_in_wal_mode_asking_the_change_watch_runs_no_statement(tmp_path: Path) -> None:
    """The watch is asked on every request (bearer lookups, overrides): in WAL mode, the store's
    mode, it reads the header and takes no lock; a statement would take and drop one."""
    path = tmp_path / "watched.sqlite3"
    _database(path, "wal")
    writer = sqlite3.connect(path, isolation_level=None)
    watch = ChangeWatch(path)
    statements: list[str] = []
    watch._connection.set_trace_callback(statements.append)
    try:
        for n in range(5):
            watch.changed()
            watch.version()
            writer.execute("INSERT INTO t (v) VALUES (?)", (n,))
        assert statements == []
    finally:
        watch.close()
        writer.close()


# -- group commit (the store's writes) ---------------------------------------------------------


class Grouped:
    """SqliteConnections with group commit on a file, the COMMITs it runs counted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = create_engine(f"sqlite:///{path}")
        with self.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v INTEGER NOT NULL)")
            conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql(
                "CREATE TABLE child (parent_id INTEGER NOT NULL REFERENCES parent (id)"
                " DEFERRABLE INITIALLY DEFERRED)"
            )
        self.commits: list[str] = []
        setup = sqlite_setup(in_memory=False)

        def counted(connection: Any) -> None:
            setup(connection)
            connection.set_trace_callback(
                lambda sql: self.commits.append(sql) if sql == "COMMIT" else None
            )

        self.connections = SqliteConnections(self.engine, counted, group_commit=True)

    def rows(self) -> list[int]:
        """What another process would read now."""
        other = sqlite3.connect(self.path)
        try:
            return sorted(v for (v,) in other.execute("SELECT v FROM t"))
        finally:
            other.close()

    def close(self) -> None:
        self.connections.close()
        self.engine.dispose()


@pytest.fixture
def grouped(tmp_path: Path) -> Iterator[Grouped]:
    result = Grouped(tmp_path / "grouped.sqlite3")
    yield result
    result.close()


def _queued_behind(grouped: Grouped, *then: Callable[[], None]) -> list[list[BaseException]]:
    """A write that writes nothing, in a thread; while it is inside its block, the others, each
    in a thread that queues behind it; the errors of each, the first's first, once all end."""
    inside = threading.Event()
    go_on = threading.Event()

    def holder() -> None:
        with grouped.connections.transaction("BEGIN IMMEDIATE"):
            inside.set()
            go_on.wait(10)

    threads = [_in_thread(holder)]
    assert inside.wait(10)
    for work in then:
        threads.append(_in_thread(work))
    # Every other writer is waiting for the writers' lock before the first one ends.
    deadline = time.monotonic() + 10
    while grouped.connections._queued < len(then) and time.monotonic() < deadline:
        time.sleep(0.005)
    go_on.set()
    for thread, _ in threads:
        thread.join(20)
        assert not thread.is_alive()
    return [errors for _, errors in threads]


def _write(grouped: Grouped, value: int, seen: list[list[int]] | None = None) -> Callable[[], None]:
    def work() -> None:
        with grouped.connections.transaction("BEGIN IMMEDIATE") as x:
            x.run(INSERT, {"v": value})
        if seen is not None:
            seen.append(grouped.rows())

    return work


def test_writes_queued_behind_each_other_share_one_commit(grouped: Grouped) -> None:
    errors = _queued_behind(grouped, *(_write(grouped, n) for n in range(1, 6)))

    assert errors == [[]] * 6
    assert grouped.rows() == [1, 2, 3, 4, 5]
    assert grouped.commits == ["COMMIT"]


def test_a_grouped_write_returns_only_once_it_is_committed(grouped: Grouped) -> None:
    """Each writer, as its block ends, reads the file as another process would: its row is
    there, though the last writer of its group (who commits) took longer."""
    seen: list[list[int]] = []

    def slow_last() -> None:
        with grouped.connections.transaction("BEGIN IMMEDIATE") as x:
            x.run(INSERT, {"v": 3})
            time.sleep(0.3)
        seen.append(grouped.rows())

    errors = _queued_behind(grouped, _write(grouped, 1, seen), slow_last)

    assert errors == [[], [], []]
    assert seen == [[1, 3], [1, 3]]
    assert grouped.commits == ["COMMIT"]


def test_a_failed_write_in_a_group_undoes_only_its_own_statements(grouped: Grouped) -> None:
    def failing() -> None:
        with grouped.connections.transaction("BEGIN IMMEDIATE") as x:
            x.run(INSERT, {"v": 2})
            raise RuntimeError("the handler refused")

    errors = _queued_behind(grouped, _write(grouped, 1), failing, _write(grouped, 3))

    assert [len(e) for e in errors] == [0, 0, 1, 0]
    assert isinstance(errors[2][0], RuntimeError)
    assert grouped.rows() == [1, 3]


def test_a_failed_commit_fails_every_write_of_its_group_and_the_next_write_works(
    grouped: Grouped,
) -> None:
    """A deferred foreign key fails at COMMIT: no write of the group stays, each is told."""

    def dangling_child() -> None:
        with grouped.connections.transaction("BEGIN IMMEDIATE") as x:
            x.run(sa.text("INSERT INTO child (parent_id) VALUES (42)"))

    errors = _queued_behind(grouped, _write(grouped, 1), dangling_child)

    assert [len(e) for e in errors] == [1, 1, 1]
    assert all(isinstance(e[0], sqlite3.IntegrityError) for e in errors)
    assert grouped.rows() == []
    _write(grouped, 7)()
    assert grouped.rows() == [7]


def test_a_long_queue_is_committed_in_bounded_groups(grouped: Grouped) -> None:
    writers = [_write(grouped, n) for n in range(MAX_GROUP + 8)]

    errors = _queued_behind(grouped, *writers)

    assert all(e == [] for e in errors)
    assert grouped.rows() == list(range(MAX_GROUP + 8))
    assert 2 <= len(grouped.commits) < MAX_GROUP
