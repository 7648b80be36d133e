"""System events: getSystemEvents, the audit log every change writes to."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flashback_contract.domain import EventContext, EventType, SystemEvent, User, iso
from flashback_contract.mock import policy
from flashback_contract.mock.auth import principal_of
from flashback_contract.mock.services import current_services
from flashback_contract.store import EventQuery

DEFAULT_WINDOW = timedelta(hours=24)


def _window(body: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    since = body.get("from_timestamp")
    until = body.get("to_timestamp")
    start = None if since is None else datetime.fromisoformat(since)
    end = None if until is None else datetime.fromisoformat(until)
    if start is None and end is None:
        end = now
    if start is None:
        assert end is not None
        start = end - DEFAULT_WINDOW
    if end is None:
        end = start + DEFAULT_WINDOW
    # from after to is an empty window: no event matches, no error.
    return start, end


def _event(e: SystemEvent, users: dict[str, User | None], read: set[int]) -> dict[str, Any]:
    user = users.get(e.user_id) if e.user_id else None
    return {
        "id": e.id,
        "timestamp": iso(e.timestamp),
        "contextId": e.context_id,
        "context": e.context.name,
        "event": e.event.name,
        "orgId": e.org_id,
        "userId": e.user_id,
        "userName": user.name if user else None,
        "userEmail": user.email if user else None,
        "workspaceId": e.workspace_id,
        "jsonData": e.json_data,
        # Per current user, as documented: true while this user has not read the event.
        "showUnread": e.id not in read,
    }


def getSystemEvents(body: dict[str, Any], token_info: dict[str, Any]) -> tuple[dict[str, Any], int]:
    principal = principal_of(token_info)
    services = current_services()
    since, until = _window(body, services.clock())
    skip, take = body.get("skip", 0), body.get("take", 20)
    query = EventQuery(
        org_id=principal.org_id,
        since=since,
        until=until,
        user_id=policy.visible_event_user(principal, body.get("userId")),
        context=None if body.get("context") is None else EventContext(body["context"]),
        event=None if body.get("event") is None else EventType(body["event"]),
        context_id=body.get("contextId"),
        workspace_id=body.get("workspaceId"),
        # showUnread true: only what the current user has not read; absent or false: no filter.
        unread_by=principal.user_id if body.get("showUnread") else None,
        skip=skip,
        take=take,
    )
    with services.store.transaction() as uow:
        events, total = uow.query_events(query)
        users = {uid: uow.user(uid) for uid in {e.user_id for e in events if e.user_id}}
        read = uow.events_read_by(principal.user_id, [e.id for e in events if e.id is not None])
    return {
        "events": [_event(e, users, read) for e in events],
        "total": total,
        "skip": skip,
        "take": take,
    }, 200
