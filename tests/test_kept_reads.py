"""Reads kept while a store's data version stays the same, and read anew after any commit:
this process's, another connection's, another server's on the same file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from flashback_contract import Settings, create_app
from flashback_contract.domain import Repository
from flashback_contract.store import Store
from flashback_contract.store.base import UnitOfWork
from flashback_contract.store.kept import KeptReads
from tests.conftest import GLOBEX_OWNER, OWNER, bearer, seeded_store


@pytest.fixture
def store(seeded_sqlite: Store) -> Store:
    return seeded_sqlite


@pytest.fixture
def on_file(sqlite_path: Path) -> Settings:
    """Settings of a mock on the test's SQLite file."""
    return Settings(store_url=f"sqlite:///{sqlite_path}", validate_responses=True)


class Reads:
    """A read unit's body that counts how often it reached the data."""

    def __init__(self, repo_id: str = "repo-acme-main") -> None:
        self.repo_id = repo_id
        self.count = 0

    def repository_name(self, uow: UnitOfWork) -> str | None:
        self.count += 1
        repository = uow.repository(self.repo_id)
        return None if repository is None else repository.name


def test_a_read_is_answered_again_while_nothing_is_committed(store: Store) -> None:
    kept, reads = KeptReads(), Reads()

    answers = [kept.read(store, "name", reads.repository_name) for _ in range(3)]

    assert answers[0] is not None
    assert answers == [answers[0]] * 3
    assert reads.count == 1


def test_a_commit_of_this_process_is_read_at_once(store: Store) -> None:
    kept, reads = KeptReads(), Reads("repo-new")
    assert kept.read(store, "name", reads.repository_name) is None

    with store.transaction() as uow:
        uow.add_repository(Repository("repo-new", "org-acme", "made here"))

    assert kept.read(store, "name", reads.repository_name) == "made here"
    assert reads.count == 2


def test_a_commit_of_another_connection_is_read_at_once(store: Store, sqlite_path: Path) -> None:
    kept, reads = KeptReads(), Reads()
    assert kept.read(store, "name", reads.repository_name) not in (None, "renamed elsewhere")

    other = sqlite3.connect(sqlite_path)
    with other:
        other.execute(
            "UPDATE repositories SET name = 'renamed elsewhere' WHERE id = 'repo-acme-main'"
        )
    other.close()

    assert kept.read(store, "name", reads.repository_name) == "renamed elsewhere"
    assert reads.count == 2


def test_a_read_that_raises_keeps_nothing(store: Store) -> None:
    kept = KeptReads()
    calls = 0

    def failing(uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        raise LookupError("not there")

    for _ in range(2):
        with pytest.raises(LookupError):
            kept.read(store, "failing", failing)
    assert calls == 2


def test_keys_are_kept_apart_and_at_most_the_limit_of_them(store: Store) -> None:
    kept = KeptReads(limit=2)
    reads: dict[str, int] = {}

    def read_for(name: str) -> Any:
        def read(uow: UnitOfWork) -> str:
            reads[name] = reads.get(name, 0) + 1
            return name

        return read

    for _ in range(2):
        assert [kept.read(store, k, read_for(k)) for k in ("a", "b", "c")] == ["a", "b", "c"]

    # "a" and "b" were kept; "c", beyond the limit, is read each time.
    assert reads == {"a": 1, "b": 1, "c": 2}


def test_a_result_counts_its_size_against_the_limit(store: Store) -> None:
    kept = KeptReads(limit=6)
    reads: list[str] = []

    def listing(name: str, length: int) -> Any:
        def read(uow: UnitOfWork) -> tuple[int, ...]:
            reads.append(name)
            return tuple(range(length))

        return read

    for _ in range(2):
        kept.read(store, "three", listing("three", 3), len)  # 1 + 3 items: kept
        kept.read(store, "two", listing("two", 2), len)  # 1 + 2 more would make 7: not kept
        kept.read(store, "one", listing("one", 1), len)  # 1 + 1: kept, 6 in all

    assert reads == ["three", "two", "one", "two"]


def test_the_limit_holds_over_every_store_and_a_commit_frees_a_stores_share(
    store: Store, tmp_path: Path
) -> None:
    other = seeded_store(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    kept = KeptReads(limit=2)
    reads: list[str] = []

    def read_of(name: str) -> Any:
        def read(uow: UnitOfWork) -> str:
            reads.append(name)
            return name

        return read

    kept.read(store, "a", read_of("a"))
    kept.read(store, "b", read_of("b"))
    kept.read(other, "c", read_of("c"))  # the limit is reached in the first store
    kept.read(other, "c", read_of("c"))
    assert reads == ["a", "b", "c", "c"]

    with store.transaction() as uow:  # the first store's kept reads are out of date now
        uow.add_repository(Repository("repo-freed", "org-acme", "freed"))
    kept.read(other, "c", read_of("c"))  # the room they held is free: kept, 1 of 2
    kept.read(other, "c", read_of("c"))
    kept.read(store, "a", read_of("a"))  # read anew, kept under the new version: 2 of 2
    kept.read(store, "a", read_of("a"))
    assert reads == ["a", "b", "c", "c", "c", "a"]
    other.close()


def test_a_closed_store_gives_up_its_room(store: Store, tmp_path: Path) -> None:
    closed = seeded_store(f"sqlite:///{tmp_path / 'closed.sqlite3'}")
    kept = KeptReads(limit=1)
    kept.read(closed, "a", lambda uow: "a")
    closed.close()  # as an expired session's store, still referenced
    reads = Reads()

    for _ in range(2):
        kept.read(store, "name", reads.repository_name)

    assert reads.count == 1


class StepVersions:
    """A store whose data version the test sets: a read can begin under an older one."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.version = 1

    def data_version(self) -> int:
        return self.version

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_read_begun_under_an_older_version_does_not_replace_newer_ones(store: Store) -> None:
    kept = KeptReads()
    stepped = StepVersions(store)
    reads = Reads()
    stepped.version = 2
    kept.read(stepped, "name", reads.repository_name)  # type: ignore[arg-type]

    def slow(uow: UnitOfWork) -> str:
        # Began under version 1; a commit made it 2 and a newer read was kept meanwhile.
        return "old"

    stepped.version = 1
    assert kept.read(stepped, "slow", slow) == "old"  # type: ignore[arg-type]
    stepped.version = 2
    kept.read(stepped, "name", reads.repository_name)  # type: ignore[arg-type]

    assert reads.count == 1  # still kept under version 2


def test_a_store_without_a_data_version_is_read_every_time() -> None:
    memory = seeded_store("memory://")
    kept, reads = KeptReads(), Reads()

    for _ in range(3):
        kept.read(memory, "name", reads.repository_name)

    assert reads.count == 3
    memory.close()


# -- the handlers that keep their reads -------------------------------------------------


@pytest.fixture
def two_servers(on_file: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """Two mock apps on one SQLite file: as two server processes, each with its own
    connections and its own view of the file's data version."""
    with create_app(on_file).test_client() as one, create_app(on_file).test_client() as two:
        yield one, two


def ai_key_names(client: TestClient, repo: str = "repo-acme-main") -> list[str]:
    response = client.get(f"/repo/{repo}/ai/apikey", headers=bearer(OWNER))
    assert response.status_code == 200, response.text
    return sorted(k["name"] for k in response.json()["apiKeys"])


def test_a_listing_shows_a_key_another_server_created_and_deleted(
    two_servers: tuple[TestClient, TestClient],
) -> None:
    one, two = two_servers
    before = ai_key_names(one)
    assert ai_key_names(one) == before  # answered from what was kept

    created = two.post(
        "/repo/repo-acme-main/ai/apikey",
        json={"name": "made elsewhere", "aiType": "OPENAI"},
        headers=bearer(OWNER),
    )
    assert created.status_code == 201
    assert ai_key_names(one) == sorted([*before, "made elsewhere"])

    deleted = two.delete(
        f"/repo/repo-acme-main/ai/apikey/{created.json()['id']}", headers=bearer(OWNER)
    )
    assert deleted.status_code == 200
    assert ai_key_names(one) == before


def test_org_keys_show_a_key_another_server_deleted(
    two_servers: tuple[TestClient, TestClient],
) -> None:
    one, two = two_servers
    listed = one.get("/organization/org-acme/key", headers=bearer(OWNER)).json()["data"]
    assert listed, "the demo data has organization keys"
    assert one.get("/organization/org-acme/key", headers=bearer(OWNER)).json()["data"] == listed

    gone = listed[0]["id"]
    assert (
        two.delete(f"/organization/org-acme/key/{gone}", headers=bearer(OWNER)).status_code == 200
    )

    after = one.get("/organization/org-acme/key", headers=bearer(OWNER)).json()["data"]
    assert [k["id"] for k in after] == [k["id"] for k in listed if k["id"] != gone]


def test_a_kept_listing_is_refused_to_another_organization(
    two_servers: tuple[TestClient, TestClient],
) -> None:
    one, _ = two_servers
    assert ai_key_names(one)  # kept for the repository...

    refused = one.get("/repo/repo-acme-main/ai/apikey", headers=bearer(GLOBEX_OWNER))
    unknown = one.get("/repo/repo-nowhere/ai/apikey", headers=bearer(OWNER))

    # ...and still checked against each caller; an unknown repository is refused alike.
    assert (refused.status_code, unknown.status_code) == (403, 403)
    assert refused.json() == unknown.json()
    assert refused.json()["success"] is False


def test_sessions_keep_their_reads_apart(on_file: Settings) -> None:
    session = {**bearer(OWNER), "X-Mock-Session": "kept-apart"}
    with create_app(on_file).test_client() as client:
        made: dict[str, list[str]] = {"default": [], "session": []}
        demo = ai_key_names(client)
        for n in range(3):
            # The same steps in each state: their data versions move alike.
            for where, headers in (("default", bearer(OWNER)), ("session", session)):
                name = f"{where} {n}"
                created = client.post(
                    "/repo/repo-acme-main/ai/apikey",
                    json={"name": name, "aiType": "OPENAI"},
                    headers=headers,
                )
                assert created.status_code == 201
                made[where].append(name)
            for where, headers in (("default", bearer(OWNER)), ("session", session)):
                listed = client.get("/repo/repo-acme-main/ai/apikey", headers=headers)
                names = sorted(k["name"] for k in listed.json()["apiKeys"])
                assert names == sorted([*demo, *made[where]]), where
