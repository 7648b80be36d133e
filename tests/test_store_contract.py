"""The store contract: every adapter passes the same tests, unchanged."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from flashback_contract import Settings, create_app
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
    User,
)
from flashback_contract.store import EventQuery, Store, open_store
from flashback_contract.store.sql import _AI_KEYS
from flashback_contract.store.sql_run import COPY_FROM
from tests.conftest import OWNER, bearer
from tests.servers import serve_in_thread
from tests.stores import ADAPTERS, open_adapter

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_adapter(request.param, tmp_path) as store:
        yield store


@pytest.fixture
def populated(adapter: Store) -> Store:
    with adapter.transaction() as uow:
        uow.add_organization(Organization("org-a", "A"))
        uow.add_organization(Organization("org-b", "B"))
        uow.add_user(User("u-a", "org-a", Role.OWNER, "Ann", "ann@a.example"), token="tok-a")
        uow.add_user(User("u-b", "org-b", Role.USER), token=None)
        uow.add_repository(Repository("repo-a", "org-a", "main"))
        for n in range(3):
            uow.add_org_key(
                OrganizationKey(
                    id=f"k{n}",
                    org_id="org-a",
                    public_key=f"PEM{n}",
                    created_at=T0 + timedelta(days=n),
                    node_keys=(NodeKey(f"k{n}", f"10.0.0.{n}"),),
                )
            )
        uow.add_org_key(OrganizationKey("kb", "org-b", "PEMB", T0, (NodeKey("kb", "10.9.9.9"),)))
    return adapter


def ai_key(key_id: str, created: datetime = T0) -> RepoAiApiKey:
    return RepoAiApiKey(
        id=key_id,
        repo_id="repo-a",
        name=f"name {key_id}",
        key=f"FB_AI_{key_id}",
        ai_type=AiType.ANTHROPIC,
        secret_sha256="ab" * 32,
        created_at=created,
    )


def test_an_unseeded_store_is_empty_and_a_seeded_one_is_not(adapter: Store) -> None:
    with adapter.transaction() as uow:
        assert uow.is_empty()
        uow.add_organization(Organization("org-x", "X"))
    with adapter.transaction() as uow:
        assert not uow.is_empty()
        assert uow.organization("org-x") == Organization("org-x", "X")
        assert uow.organization("org-y") is None


def test_users_are_found_by_id_and_by_token(populated: Store) -> None:
    with populated.transaction() as uow:
        ann = User("u-a", "org-a", Role.OWNER, "Ann", "ann@a.example")
        assert uow.user_by_token("tok-a") == ann
        assert uow.user("u-a") == ann
        assert uow.user_by_token("tok-unknown") is None
        assert uow.repository("repo-a") == Repository("repo-a", "org-a", "main")
        assert uow.repository("repo-z") is None


def test_org_keys_list_newest_first_with_their_node_keys(populated: Store) -> None:
    with populated.transaction() as uow:
        keys = uow.org_keys("org-a")
        assert [k.id for k in keys] == ["k2", "k1", "k0"]
        assert keys[0].node_keys == (NodeKey("k2", "10.0.0.2"),)
        assert keys[0].created_at == T0 + timedelta(days=2)
        assert uow.count_org_keys("org-a") == 3
        assert uow.count_org_keys("org-none") == 0


def test_adding_the_same_node_key_twice_keeps_one(populated: Store) -> None:
    with populated.transaction() as uow:
        uow.add_node_key(NodeKey("k0", "10.0.0.0"))
        uow.add_node_key(NodeKey("k0", "10.0.0.99"))
    with populated.transaction() as uow:
        [*_, k0] = uow.org_keys("org-a")
        assert sorted(nk.node_id for nk in k0.node_keys) == ["10.0.0.0", "10.0.0.99"]


def test_deleting_all_org_keys_cascades_to_node_keys_of_that_org_only(populated: Store) -> None:
    with populated.transaction() as uow:
        assert uow.delete_org_keys("org-a") == 3
    with populated.transaction() as uow:
        assert uow.org_keys("org-a") == []
        assert uow.delete_org_keys("org-a") == 0
        [kb] = uow.org_keys("org-b")
        assert kb.node_keys == (NodeKey("kb", "10.9.9.9"),)
        # A new key with an old id carries no stale node keys.
        uow.add_org_key(OrganizationKey("k0", "org-a", "PEMNEW", T0))
        assert uow.org_keys("org-a")[0].node_keys == ()


def test_deleting_one_org_key_checks_its_organization(populated: Store) -> None:
    with populated.transaction() as uow:
        assert not uow.delete_org_key("org-a", "kb")
        assert not uow.delete_org_key("org-a", "missing")
        assert uow.delete_org_key("org-a", "k1")
    with populated.transaction() as uow:
        assert [k.id for k in uow.org_keys("org-a")] == ["k2", "k0"]
        assert len(uow.org_keys("org-b")) == 1


def test_ai_keys_soft_delete_and_rename(populated: Store) -> None:
    with populated.transaction() as uow:
        uow.add_ai_key(ai_key("ai1", T0))
        uow.add_ai_key(ai_key("ai2", T0 + timedelta(hours=1)))
    with populated.transaction() as uow:
        assert [k.id for k in uow.ai_keys("repo-a")] == ["ai2", "ai1"]
        assert uow.rename_ai_key("ai1", "renamed") == ai_key("ai1", T0).name
        assert uow.rename_ai_key("ai1", "renamed") == "renamed"
        assert uow.soft_delete_ai_key("ai2", T0 + timedelta(days=1))
    with populated.transaction() as uow:
        # A deleted key is deleted once and renamed never; an unknown one neither.
        assert not uow.soft_delete_ai_key("ai2", T0 + timedelta(days=2))
        assert uow.rename_ai_key("ai2", "too late") is None
        assert not uow.soft_delete_ai_key("nope", T0)
        assert uow.rename_ai_key("nope", "x") is None
    with populated.transaction() as uow:
        assert [k.id for k in uow.ai_keys("repo-a")] == ["ai1"]
        gone = uow.ai_key("ai2")
        assert gone is not None and gone.deleted_at == T0 + timedelta(days=1)
        assert gone.secret_sha256 == "ab" * 32
        kept = uow.ai_key("ai1")
        assert kept is not None and kept.name == "renamed" and kept.ai_type is AiType.ANTHROPIC
        assert uow.ai_key("nope") is None


def test_a_listing_skips_deleted_keys_and_a_rolled_back_delete_puts_its_key_back_in_order(
    populated: Store,
) -> None:
    """Keys deleted before, or loaded deleted (an import), are never listed; a delete that
    rolls back leaves the listing as it was."""
    with populated.transaction() as uow:
        uow.add_ai_key(replace(ai_key("gone-before"), deleted_at=T0 + timedelta(days=1)))
        for n in range(5):
            uow.add_ai_key(ai_key(f"ai{n}", T0 + timedelta(minutes=n)))
        for n in (1, 3):
            assert uow.soft_delete_ai_key(f"ai{n}", T0 + timedelta(days=2))
    with populated.transaction() as uow:
        assert [k.id for k in uow.ai_keys("repo-a")] == ["ai4", "ai2", "ai0"]
    with pytest.raises(RuntimeError), populated.transaction() as uow:
        assert uow.soft_delete_ai_key("ai2", T0 + timedelta(days=3))
        uow.add_ai_key(ai_key("ai5", T0 + timedelta(minutes=5)))
        assert uow.soft_delete_ai_key("ai4", T0 + timedelta(days=3))
        assert [k.id for k in uow.ai_keys("repo-a")] == ["ai5", "ai0"]
        raise RuntimeError("abort")
    with populated.transaction() as uow:
        assert [k.id for k in uow.ai_keys("repo-a")] == ["ai4", "ai2", "ai0"]
        assert uow.ai_key("gone-before") is not None


def test_a_batch_of_keys_is_written_whole_with_times_and_deletions(populated: Store) -> None:
    """A seed's keys go in as one batch (COPY on PostgreSQL, from COPY_FROM rows): every key,
    its times to the microsecond, the deleted ones kept but not listed."""
    batch = [
        replace(
            ai_key(f"bulk{n:04}", T0 + timedelta(seconds=n, microseconds=n)),
            deleted_at=T0 + timedelta(days=1) if n % 10 == 0 else None,
        )
        for n in range(max(COPY_FROM, 1000))
    ]
    with populated.transaction() as uow:
        uow.add_ai_keys(batch)
    with populated.reading() as uow:
        listed = uow.ai_keys("repo-a")
        assert [k.id for k in listed] == [k.id for k in reversed(batch) if k.deleted_at is None]
        assert listed[-1] == batch[1]
        deleted = uow.ai_key("bulk0010")
        assert deleted == batch[10] and deleted.deleted_at == T0 + timedelta(days=1)


def test_a_copied_batch_with_a_taken_id_fails_as_an_insert_would_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """PostgreSQL's COPY reports a duplicate id as SQLAlchemy reports it for an INSERT, and
    the unit of work rolls back the whole batch."""
    with open_adapter("postgresql", tmp_path) as store:
        with store.transaction() as uow:
            uow.add_organization(Organization("org-a", "A"))
            uow.add_repository(Repository("repo-a", "org-a", "main"))
        batch = [ai_key(f"bulk{n:04}", T0 + timedelta(seconds=n)) for n in range(COPY_FROM)]
        with pytest.raises(sa.exc.IntegrityError), store.transaction() as uow:
            uow.add_ai_keys([*batch, batch[0]])
        with store.reading() as uow:
            assert uow.ai_keys("repo-a") == []


def test_sqlite_lists_a_repositorys_keys_through_the_index_of_active_keys(tmp_path: Path) -> None:
    """Not through repo_id alone, which would walk every key the repository ever had."""
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    store.close()
    listing = str(_AI_KEYS.compile(dialect=sqlite_dialect.dialect()))
    with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {listing}", ("repo-a",)).fetchall()
    assert [row[-1] for row in plan] == [
        "SEARCH repo_ai_api_keys USING INDEX repo_ai_api_keys_active (repo_id=?)"
    ]


def test_events_get_increasing_numeric_ids_and_list_newest_first(populated: Store) -> None:
    event = SystemEvent(
        context=EventContext.orgkey,
        event=EventType.created,
        org_id="org-a",
        user_id="u-a",
        context_id="k0",
        timestamp=T0,
        json_data='{"n": 1}',
    )
    with populated.transaction() as uow:
        first = uow.add_event(event)
        second = uow.add_event(replace(event, event=EventType.deleted))
    assert second > first
    with populated.transaction() as uow:
        events = uow.events()
    assert [e.id for e in events] == [second, first]
    assert events[1] == event  # ids do not take part in equality
    assert events[0].event is EventType.deleted


def test_a_transaction_that_raises_leaves_nothing_behind(populated: Store) -> None:
    with pytest.raises(RuntimeError), populated.transaction() as uow:
        uow.delete_org_keys("org-a")
        uow.add_ai_key(ai_key("ai-partial"))
        uow.add_organization(Organization("org-partial", "P"))
        raise RuntimeError("abort")

    with populated.transaction() as uow:
        assert len(uow.org_keys("org-a")) == 3
        assert uow.ai_key("ai-partial") is None
        assert uow.organization("org-partial") is None
        assert uow.org_keys("org-a")[2].node_keys == (NodeKey("k0", "10.0.0.0"),)


def test_a_rollback_restores_order_nodes_events_and_cleared_data(populated: Store) -> None:
    with populated.transaction() as uow:
        before = uow.everything()
    with pytest.raises(RuntimeError), populated.transaction() as uow:
        uow.delete_org_key("org-a", before.org_keys[0].id)
        for node in before.nodes:
            uow.delete_node(node.ip)
        uow.add_event(before.events[0] if before.events else _any_event())
        uow.clear()
        uow.add_organization(Organization("org-after-clear", "C"))
        raise RuntimeError("abort")
    with populated.transaction() as uow:
        assert uow.everything() == before


def test_a_rollback_of_added_and_removed_keys_restores_every_list_in_its_order(
    populated: Store,
) -> None:
    """Adds and removals mixed in one transaction, on the lists of an organization, a
    repository and a node key, all put back as they were."""
    with populated.transaction() as uow:
        uow.add_ai_key(ai_key("ai-1"))
        uow.add_ai_key(ai_key("ai-2", T0 + timedelta(seconds=1)))
        before = uow.everything()
        before_keys = uow.org_keys("org-a")
        before_ai = uow.ai_keys("repo-a")
    with pytest.raises(RuntimeError), populated.transaction() as uow:
        uow.add_ai_key(ai_key("ai-3", T0 + timedelta(seconds=2)))
        uow.add_org_key(
            OrganizationKey(
                "k-new", "org-a", "PEMN", T0 + timedelta(days=9), (NodeKey("k-new", "10.0.0.1"),)
            )
        )
        uow.delete_org_key("org-a", "k1")
        uow.add_node_key(NodeKey("k0", "10.7.7.7"))
        uow.delete_org_key("org-a", "k-new")
        uow.add_ai_key(ai_key("ai-4", T0 + timedelta(seconds=3)))
        raise RuntimeError("abort")
    with populated.transaction() as uow:
        assert uow.org_keys("org-a") == before_keys
        assert uow.ai_keys("repo-a") == before_ai
        assert uow.everything() == before


def _any_event() -> SystemEvent:
    return SystemEvent(
        context=EventContext.orgkey,
        event=EventType.created,
        org_id="org-a",
        user_id=None,
        context_id="k0",
        timestamp=T0,
    )


def test_locking_an_organization_is_allowed_inside_a_transaction(populated: Store) -> None:
    with populated.transaction() as uow:
        uow.lock_organization("org-a")
        uow.lock_organization("org-unknown")
        uow.lock_state()
        uow.lock_state()
        assert uow.count_org_keys("org-a") == 3


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_generates_never_exceed_the_quota(kind: str, tmp_path: Path) -> None:
    with open_adapter(kind, tmp_path) as store:
        app = create_app(Settings(store_url=store.url, orgkeys_max=5), store=store)
        with serve_in_thread(app) as base_url, ThreadPoolExecutor(max_workers=6) as pool:

            def generate(_: int) -> int:
                return httpx.post(
                    f"{base_url}/organization/org-acme/key", headers=bearer(OWNER), timeout=30
                ).status_code

            statuses = list(pool.map(generate, range(6)))

        # The demo organization holds 3 keys: exactly 2 more fit, whatever the interleaving.
        assert sorted(statuses) == [200, 200, 400, 400, 400, 400]
        with store.transaction() as uow:
            assert uow.count_org_keys("org-acme") == 5


def a_node(ip: str, key_id: str, org_id: str = "org-a", version: str = "1") -> Node:
    return Node(
        ip=ip,
        org_id=org_id,
        key_id=key_id,
        provider=Provider.AZURE,
        region="r",
        version=version,
        status="online",
        updated_at=T0,
        services=6,
    )


def test_saving_a_node_makes_its_key_its_only_node_key(populated: Store) -> None:
    with populated.transaction() as uow:
        assert uow.save_node(a_node("10.0.0.0", "k1"))
    with populated.transaction() as uow:
        assert uow.node("10.0.0.0") == a_node("10.0.0.0", "k1")
        by_key = {k.id: [nk.node_id for nk in k.node_keys] for k in uow.org_keys("org-a")}
        assert by_key == {"k2": ["10.0.0.2"], "k1": ["10.0.0.0", "10.0.0.1"], "k0": []}
        assert not uow.save_node(a_node("10.0.0.0", "k1", version="2"))
    with populated.transaction() as uow:
        node = uow.node("10.0.0.0")
        assert node is not None and node.version == "2"


def test_deleting_a_node_removes_its_node_keys(populated: Store) -> None:
    with populated.transaction() as uow:
        uow.save_node(a_node("10.0.0.1", "k1"))
        assert not uow.delete_node("10.0.0.1", "org-b")  # another organization's node
        assert uow.delete_node("10.0.0.1", "org-a")
        assert not uow.delete_node("10.0.0.1", "org-a")
        assert not uow.delete_node("10.255.255.255", "org-a")  # unknown: nothing to do
    with populated.transaction() as uow:
        assert uow.node("10.0.0.1") is None
        assert [k.node_keys for k in uow.org_keys("org-a")][1] == ()


def test_verification_keys_of_one_organization_or_all(populated: Store) -> None:
    with populated.transaction() as uow:
        assert {k.id for k in uow.verification_keys("org-a")} == {"k0", "k1", "k2"}
        assert {k.id for k in uow.verification_keys(None)} == {"k0", "k1", "k2", "kb"}
        assert uow.verification_keys("org-none") == []


def test_a_signature_is_remembered_once(populated: Store) -> None:
    with populated.transaction() as uow:
        assert uow.remember_signature("ab" * 32, T0)
        assert not uow.remember_signature("ab" * 32, T0)
    with populated.transaction() as uow:
        assert not uow.remember_signature("ab" * 32, T0 + timedelta(days=1))
        assert uow.remember_signature("cd" * 32, T0)


def test_signatures_accepted_before_a_moment_are_forgotten(populated: Store) -> None:
    with populated.transaction() as uow:
        uow.remember_signature("ab" * 32, T0)
        uow.remember_signature("cd" * 32, T0 + timedelta(minutes=10))
    with populated.transaction() as uow:
        assert uow.forget_signatures(T0 + timedelta(minutes=5)) == 1
        assert uow.forget_signatures(T0 + timedelta(minutes=5)) == 0
    with populated.transaction() as uow:
        # Forgotten: accepted as new; kept: still a replay.
        assert uow.remember_signature("ab" * 32, T0 + timedelta(minutes=11))
        assert not uow.remember_signature("cd" * 32, T0 + timedelta(minutes=11))


def test_event_queries_filter_window_and_page_on_every_adapter(populated: Store) -> None:
    def at(hours: int, user: str, context: EventContext) -> SystemEvent:
        return SystemEvent(
            context, EventType.created, "org-a", user, "c", T0 + timedelta(hours=hours)
        )

    with populated.transaction() as uow:
        for hours, user, context in [
            (0, "u-a", EventContext.orgkey),
            (1, "u-b", EventContext.orgkey),
            (2, "u-a", EventContext.aillmapikey),
            (30, "u-a", EventContext.orgkey),
        ]:
            uow.add_event(at(hours, user, context))
        uow.add_event(SystemEvent(EventContext.orgkey, EventType.created, "org-b", "u-b", "c", T0))
    window = EventQuery(org_id="org-a", since=T0, until=T0 + timedelta(hours=24))
    with populated.transaction() as uow:
        events, total = uow.query_events(window)
        assert total == 3 and [e.timestamp.hour for e in events] == [14, 13, 12]
        _, only_a = uow.query_events(replace(window, user_id="u-a"))
        _, only_keys = uow.query_events(replace(window, context=EventContext.orgkey))
        page, total = uow.query_events(replace(window, skip=1, take=1))
    assert (only_a, only_keys) == (2, 2)
    assert total == 3 and [e.timestamp.hour for e in page] == [13]


def test_settings_are_kept_once_and_survive_clear(populated: Store) -> None:
    with populated.transaction() as uow:
        assert uow.setting("jwt_secret") is None
        assert uow.put_setting_if_absent("jwt_secret", "first") == "first"
        assert uow.put_setting_if_absent("jwt_secret", "second") == "first"
        uow.clear()
    with populated.transaction() as uow:
        assert uow.is_empty()
        assert uow.org_keys("org-a") == [] and uow.events() == []
        assert uow.setting("jwt_secret") == "first"


def test_everything_lists_all_data_for_export(populated: Store) -> None:
    with populated.transaction() as uow:
        uow.add_ai_key(ai_key("ai1"))
        uow.soft_delete_ai_key("ai1", T0)
        uow.save_node(a_node("10.0.0.5", "k0"))
        data = uow.everything()
    assert [o.id for o in data.organizations] == ["org-a", "org-b"]
    assert {(u.id, token) for u, token in data.users} == {("u-a", "tok-a"), ("u-b", None)}
    assert [k.id for k in data.org_keys] == ["k0", "k1", "k2", "kb"]
    assert [k.id for k in data.ai_keys] == ["ai1"] and data.ai_keys[0].deleted_at == T0
    assert [n.ip for n in data.nodes] == ["10.0.0.5"]


def test_reads_are_kept_per_event_and_user(populated: Store) -> None:
    def event(hours: int) -> SystemEvent:
        return SystemEvent(
            EventContext.orgkey, EventType.created, "org-a", "u-a", "c", T0 + timedelta(hours=hours)
        )

    with populated.transaction() as uow:
        first, second, third = (uow.add_event(event(h)) for h in (0, 1, 2))
        uow.mark_event_read(first, "u-a")
        uow.mark_event_read(first, "u-a")  # again: nothing changes
        uow.mark_event_read(second, "u-b")
    window = EventQuery(org_id="org-a", since=T0, until=T0 + timedelta(hours=24))
    with populated.transaction() as uow:
        assert uow.events_read_by("u-a", [first, second, third]) == {first}
        assert uow.events_read_by("u-b", [first, second, third]) == {second}
        assert uow.events_read_by("u-a", []) == set()
        unread_a, total_a = uow.query_events(replace(window, unread_by="u-a"))
        _, total_b = uow.query_events(replace(window, unread_by="u-b"))
        _, total_all = uow.query_events(window)
        assert [e.id for e in unread_a] == [third, second] and total_a == 2
        assert (total_b, total_all) == (2, 3)
        assert [(r.event_id, r.user_id) for r in uow.everything().event_reads] == [
            (first, "u-a"),
            (second, "u-b"),
        ]


def test_reads_roll_back_with_their_transaction_and_go_with_clear(populated: Store) -> None:
    with populated.transaction() as uow:
        event_id = uow.add_event(
            SystemEvent(EventContext.orgkey, EventType.created, "org-a", "u-a", "c", T0)
        )
    with pytest.raises(RuntimeError), populated.transaction() as uow:
        uow.mark_event_read(event_id, "u-a")
        raise RuntimeError("midway")
    with populated.transaction() as uow:
        assert uow.events_read_by("u-a", [event_id]) == set()
        uow.mark_event_read(event_id, "u-a")
        uow.clear()
    with populated.transaction() as uow:
        assert uow.everything().event_reads == []


def test_a_data_version_changes_after_every_commit_where_a_store_reports_one(
    adapter: Store, tmp_path: Path
) -> None:
    """SQLite files report one, read before what is kept under it; the in-memory adapters
    and PostgreSQL report none, and callers read the data itself."""
    before = adapter.data_version()
    if not adapter.url.startswith("sqlite:"):
        assert before is None
        return
    assert before is not None
    assert adapter.data_version() == before  # nothing committed in between
    with adapter.reading() as uow:
        uow.user_by_token("tok-a")
    assert adapter.data_version() == before  # a read commits nothing
    with adapter.transaction() as uow:
        uow.add_organization(Organization("org-v", "V"))
    after_own = adapter.data_version()
    assert after_own != before
    # Another process's commit, through a connection of its own.
    other = sqlite3.connect(tmp_path / "store.sqlite3")
    with other:
        other.execute("UPDATE organizations SET name = 'W' WHERE id = 'org-v'")
    other.close()
    assert adapter.data_version() != after_own
