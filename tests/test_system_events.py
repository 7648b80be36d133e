"""POST /systemevent: the audit log over the events every change records."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from connexion import FlaskApp
from starlette.testclient import TestClient

from flashback_contract.domain import EventContext, EventType, SystemEvent
from flashback_contract.store import Store
from tests.conftest import ADMIN, GLOBEX_OWNER, MEMBER, OWNER, bearer

NOW = datetime.now(UTC)


def add_events(
    store: Store, *events: tuple[str, str | None, EventContext, EventType, timedelta]
) -> None:
    with store.transaction() as uow:
        for org, user, context, event, age in events:
            uow.add_event(
                SystemEvent(
                    context=context,
                    event=event,
                    org_id=org,
                    user_id=user,
                    context_id=f"{context.name}-thing",
                    timestamp=NOW - age,
                    json_data=None,
                )
            )


def query(client: TestClient, token: str = OWNER, **body: Any) -> Any:
    response = client.post("/systemevent", headers=bearer(token), json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def history(store: Store, app: FlaskApp) -> Store:
    add_events(
        store,
        (
            "org-acme",
            "user-acme-owner",
            EventContext.orgkey,
            EventType.created,
            timedelta(hours=30),
        ),
        ("org-acme", "user-acme-owner", EventContext.orgkey, EventType.deleted, timedelta(hours=3)),
        (
            "org-acme",
            "user-acme-member",
            EventContext.aillmapikey,
            EventType.created,
            timedelta(hours=2),
        ),
        ("org-acme", None, EventContext.flashbacknode, EventType.created, timedelta(hours=1)),
        (
            "org-globex",
            "user-globex-owner",
            EventContext.orgkey,
            EventType.created,
            timedelta(minutes=5),
        ),
    )
    return store


def test_changes_made_through_the_api_show_up_newest_first_with_names(client: TestClient) -> None:
    client.delete("/organization/org-acme/key/orgkey-acme-1", headers=bearer(OWNER))
    client.delete("/repo/repo-acme-main/ai/apikey/aikey-acme-openai", headers=bearer(ADMIN))

    page = query(client)

    assert page["total"] == 2 and (page["skip"], page["take"]) == (0, 20)
    newest, oldest = page["events"]
    assert isinstance(newest["id"], int) and newest["id"] > oldest["id"]
    assert (newest["context"], newest["event"], newest["contextId"]) == (
        "aillmapikey",
        "deleted",
        "aikey-acme-openai",
    )
    assert (newest["userId"], newest["userName"], newest["userEmail"]) == (
        "user-acme-admin",
        "Bob Admin",
        "bob.admin@acme.example",
    )
    assert (oldest["context"], oldest["event"], oldest["orgId"]) == (
        "orgkey",
        "deleted",
        "org-acme",
    )
    assert newest["workspaceId"] is None and newest["showUnread"] is True


def test_the_default_window_is_the_last_24_hours(client: TestClient, history: Store) -> None:
    page = query(client)

    assert page["total"] == 3  # the 30-hour-old event and Globex's are out
    assert [e["context"] for e in page["events"]] == ["flashbacknode", "aillmapikey", "orgkey"]


def test_an_explicit_window_reaches_older_events(client: TestClient, history: Store) -> None:
    page = query(
        client, from_timestamp=(NOW - timedelta(days=2)).isoformat(), to_timestamp=NOW.isoformat()
    )

    assert page["total"] == 4


def test_from_after_to_is_an_empty_window(client: TestClient, history: Store) -> None:
    page = query(
        client, from_timestamp=NOW.isoformat(), to_timestamp=(NOW - timedelta(days=1)).isoformat()
    )

    assert (page["total"], page["events"]) == (0, [])


@pytest.mark.parametrize(
    ("body", "total"),
    [
        ({"context": 10}, 1),
        ({"event": 0}, 2),
        ({"userId": "user-acme-member"}, 1),
        ({"contextId": "flashbacknode-thing"}, 1),
        ({"showUnread": True}, 3),  # nobody has read anything
        ({"showUnread": False}, 3),  # no read filter
        ({"workspaceId": "ws-1"}, 0),
    ],
)
def test_filters(client: TestClient, history: Store, body: dict[str, Any], total: int) -> None:
    assert query(client, **body)["total"] == total


def test_skip_and_take_page_through_the_events(client: TestClient, history: Store) -> None:
    first = query(client, take=2)
    second = query(client, skip=2, take=2)

    assert [len(first["events"]), len(second["events"])] == [2, 1]
    assert first["total"] == second["total"] == 3
    assert {e["id"] for e in first["events"]}.isdisjoint({e["id"] for e in second["events"]})


@pytest.mark.parametrize(
    "body",
    [
        {"take": 0},
        {"take": 101},
        {"skip": -1},
        {"context": 14},
        {"event": 3},
        {"from_timestamp": "yesterday"},
    ],
)
def test_out_of_bounds_queries_are_400(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/systemevent", headers=bearer(OWNER), json=body)

    assert response.status_code == 400
    assert response.json()["success"] is False


def test_members_see_only_their_own_events(client: TestClient, history: Store) -> None:
    page = query(client, token=MEMBER)

    assert [e["userId"] for e in page["events"]] == ["user-acme-member"]
    assert query(client, token=MEMBER, userId="user-acme-owner")["total"] == 0


def test_administrators_see_the_whole_organization(client: TestClient, history: Store) -> None:
    assert query(client, token=ADMIN)["total"] == 3


def test_nobody_sees_another_organizations_events(client: TestClient, history: Store) -> None:
    page = query(client, token=GLOBEX_OWNER)

    assert [e["orgId"] for e in page["events"]] == ["org-globex"]


def test_node_events_have_no_user(client: TestClient, history: Store) -> None:
    [node_event] = query(client, context=9)["events"]

    assert (node_event["userId"], node_event["userName"], node_event["userEmail"]) == (
        None,
        None,
        None,
    )


def test_the_query_needs_a_token(client: TestClient) -> None:
    assert client.post("/systemevent", json={}).status_code == 401


@pytest.mark.parametrize("adapter", ["sqlite"])
def test_the_window_and_filters_work_in_sql_too(
    make_app: Callable[..., FlaskApp], tmp_path: Any, adapter: str
) -> None:
    from flashback_contract import Settings, create_app
    from flashback_contract.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'events.sqlite3'}")
    app = create_app(Settings(store_url=store.url), store=store)
    add_events(
        store,
        (
            "org-acme",
            "user-acme-owner",
            EventContext.orgkey,
            EventType.created,
            timedelta(hours=30),
        ),
        (
            "org-acme",
            "user-acme-member",
            EventContext.aillmapikey,
            EventType.created,
            timedelta(hours=2),
        ),
    )
    with app.test_client() as client:
        assert query(client)["total"] == 1
        assert query(client, context=12, event=0, userId="user-acme-member")["total"] == 1
    store.close()


# -- showUnread: per current user ------------------------------------------------------


def mark_read(store: Store, user: str, *contexts: EventContext) -> None:
    with store.transaction() as uow:
        for e in uow.events():
            if e.context in contexts and e.id is not None:
                uow.mark_event_read(e.id, user)


def test_every_event_is_unread_for_every_user_until_something_says_otherwise(
    client: TestClient, history: Store
) -> None:
    for token in (OWNER, ADMIN):
        page = query(client, token)
        assert page["total"] == 3
        assert all(e["showUnread"] is True for e in page["events"])


def test_each_events_flag_is_not_read_by_the_current_user(
    client: TestClient, history: Store
) -> None:
    mark_read(history, "user-acme-owner", EventContext.orgkey)

    as_owner = {e["context"]: e["showUnread"] for e in query(client, OWNER)["events"]}
    as_admin = {e["context"]: e["showUnread"] for e in query(client, ADMIN)["events"]}

    assert as_owner == {"orgkey": False, "aillmapikey": True, "flashbacknode": True}
    assert as_admin == {"orgkey": True, "aillmapikey": True, "flashbacknode": True}


def test_show_unread_true_returns_only_what_the_current_user_has_not_read(
    client: TestClient, history: Store
) -> None:
    mark_read(history, "user-acme-owner", EventContext.orgkey, EventContext.flashbacknode)

    owners = query(client, OWNER, showUnread=True)
    admins = query(client, ADMIN, showUnread=True)

    assert owners["total"] == 1 and [e["context"] for e in owners["events"]] == ["aillmapikey"]
    assert owners["events"][0]["showUnread"] is True
    assert admins["total"] == 3  # the owner's reads are the owner's


@pytest.mark.parametrize("body", [{}, {"showUnread": False}])
def test_show_unread_absent_or_false_applies_no_read_filter(
    client: TestClient, history: Store, body: dict[str, Any]
) -> None:
    mark_read(history, "user-acme-owner", EventContext.orgkey)

    page = query(client, OWNER, **body)

    assert page["total"] == 3
    assert sorted(e["showUnread"] for e in page["events"]) == [False, True, True]


def test_querying_events_marks_nothing_read(client: TestClient, history: Store) -> None:
    query(client, OWNER)
    query(client, OWNER, showUnread=True)

    with history.transaction() as uow:
        assert uow.everything().event_reads == []
