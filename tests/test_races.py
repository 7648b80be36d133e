"""Racing requests against several workers and processes on one store: the database decides.

Each test sends real parallel HTTP requests, round after round, to ``serve --workers 2`` on
SQLite and on PostgreSQL, and to two separate ``serve`` processes on one PostgreSQL database
(requests alternate between them). The outcome is one that requests taken one at a time could
give, and the audit log records each change exactly once.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flashback_contract.domain import iso, utcnow
from flashback_contract.signing import signed
from tests.conftest import OWNER, bearer
from tests.servers import serving
from tests.stores import postgres_schema_url

pytestmark = pytest.mark.slow

ROUNDS = 3
RACERS = 5
ORGKEYS_MAX = 3
AI_KEYS = "/repo/repo-acme-main/ai/apikey"
ORG_KEYS = "/organization/org-acme/key"
DEMO_KEY = (
    Path(__file__).resolve().parents[1]
    / "src/flashback_contract/mock/demo/orgkey-acme-1.private.pem"
).read_bytes()

Call = tuple[str, str, dict[str, Any] | None]


class Cluster:
    """Servers over one store; requests are spread across them."""

    def __init__(self, base_urls: list[str]) -> None:
        self.base_urls = base_urls
        self.client = httpx.Client(headers=bearer(OWNER), timeout=60)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, via: int = 0
    ) -> httpx.Response:
        base = self.base_urls[via % len(self.base_urls)]
        return self.client.request(method, base + path, json=body)

    def race(self, calls: list[Call]) -> list[httpx.Response]:
        """Send the calls at once (threads released together), each to the next server."""
        start = threading.Barrier(len(calls))

        def send(i: int) -> httpx.Response:
            method, path, body = calls[i]
            start.wait()
            return self.request(method, path, body, via=i)

        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(send, range(len(calls))))

    def events(self, context_id: str) -> list[dict[str, Any]]:
        """The audit log of one context id, oldest first."""
        response = self.request("POST", "/systemevent", {"contextId": context_id, "take": 100})
        assert response.status_code == 200, response.text
        return list(reversed(response.json()["events"]))


@pytest.fixture(
    scope="module", params=["sqlite-2-workers", "postgresql-2-workers", "postgresql-2-processes"]
)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    cwd = tmp_path_factory.mktemp(request.param)
    env = {"ORGKEYS_MAX": str(ORGKEYS_MAX)}
    if request.param == "sqlite-2-workers":
        store = f"sqlite:///{cwd / 'shared.sqlite3'}"
        with serving("--store", store, "--workers", "2", cwd=cwd, env=env) as served:
            yield Cluster([served.base_url])
        return
    with postgres_schema_url() as store:
        if request.param == "postgresql-2-workers":
            with serving("--store", store, "--workers", "2", cwd=cwd, env=env) as served:
                yield Cluster([served.base_url])
        else:
            with (
                serving("--store", store, cwd=cwd, env=env) as first,
                serving("--store", store, cwd=cwd, env=env) as second,
            ):
                yield Cluster([first.base_url, second.base_url])


def new_ai_key(cluster: Cluster, name: str = "racer") -> str:
    response = cluster.request("POST", AI_KEYS, {"name": name, "aiType": "OPENAI"})
    assert response.status_code == 201, response.text
    key_id: str = response.json()["id"]
    return key_id


def details(event: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event["jsonData"])
    return data


def deleted_count(response: httpx.Response) -> int:
    message = response.json()["message"]
    match = re.fullmatch(r"Successfully deleted (\d+) organization key\(s\)", message)
    assert match, message
    return int(match.group(1))


def test_racing_deletes_of_one_ai_key_give_one_200_and_the_rest_404(cluster: Cluster) -> None:
    for _ in range(ROUNDS):
        key_id = new_ai_key(cluster)

        responses = cluster.race([("DELETE", f"{AI_KEYS}/{key_id}", None)] * RACERS)

        assert sorted(r.status_code for r in responses) == [200] + [404] * (RACERS - 1)
        assert [e["event"] for e in cluster.events(key_id)] == ["created", "deleted"]


def test_racing_generations_never_exceed_the_quota(cluster: Cluster) -> None:
    for _ in range(ROUNDS):
        assert cluster.request("DELETE", ORG_KEYS).status_code == 200

        responses = cluster.race([("POST", ORG_KEYS, None)] * (ORGKEYS_MAX + 2))

        assert sorted(r.status_code for r in responses) == [200] * ORGKEYS_MAX + [400] * 2
        created = {r.headers["X-Organization-Key-Id"] for r in responses if r.status_code == 200}
        listed = cluster.request("GET", ORG_KEYS).json()["data"]
        assert {k["id"] for k in listed} == created
        for key_id in created:
            assert [e["event"] for e in cluster.events(key_id)] == ["created"]


def test_racing_delete_alls_report_each_key_exactly_once(cluster: Cluster) -> None:
    for _ in range(ROUNDS):
        cluster.request("DELETE", ORG_KEYS)
        for _ in range(ORGKEYS_MAX):
            assert cluster.request("POST", ORG_KEYS).status_code == 200
        logged_before = len(cluster.events("org-acme"))

        responses = cluster.race([("DELETE", ORG_KEYS, None)] * RACERS)

        assert [r.status_code for r in responses] == [200] * RACERS
        counts = sorted(deleted_count(r) for r in responses)
        assert sum(counts) == ORGKEYS_MAX
        assert cluster.request("GET", ORG_KEYS).json()["data"] == []
        logged = cluster.events("org-acme")[logged_before:]
        assert sorted(details(e)["deletedCount"] for e in logged) == counts


def test_racing_renames_leave_one_of_the_names_and_log_each_change(cluster: Cluster) -> None:
    for round_ in range(ROUNDS):
        key_id = new_ai_key(cluster, name="original")
        names = [f"name-{round_}-{i}" for i in range(RACERS)]

        responses = cluster.race([("PUT", f"{AI_KEYS}/{key_id}", {"name": n}) for n in names])

        assert [r.status_code for r in responses] == [200] * RACERS
        listed = {k["id"]: k["name"] for k in cluster.request("GET", AI_KEYS).json()["apiKeys"]}
        assert listed[key_id] in names
        # Each rename starts from the name the one before it left, ending at the one kept.
        renames = [details(e)["name"] for e in cluster.events(key_id) if e["event"] == "updated"]
        assert len(renames) == RACERS
        assert [r["from"] for r in renames] == ["original"] + [r["to"] for r in renames[:-1]]
        assert renames[-1]["to"] == listed[key_id]
        cluster.request("DELETE", f"{AI_KEYS}/{key_id}")


def test_a_rename_racing_a_delete_happens_before_it_or_is_404(cluster: Cluster) -> None:
    for _ in range(ROUNDS):
        key_id = new_ai_key(cluster)
        path = f"{AI_KEYS}/{key_id}"

        renamed, deleted = cluster.race(
            [("PUT", path, {"name": "renamed"}), ("DELETE", path, None)]
        )

        assert deleted.status_code == 200
        assert renamed.status_code in (200, 404)
        logged = [e["event"] for e in cluster.events(key_id)]
        if renamed.status_code == 200:
            assert logged == ["created", "updated", "deleted"]
        else:
            assert logged == ["created", "deleted"]


def test_every_server_sees_every_write(cluster: Cluster) -> None:
    key_id = new_ai_key(cluster, name="shared")

    listings = [cluster.request("GET", AI_KEYS, via=i).json()["apiKeys"] for i in range(4)]

    assert all(key_id in [k["id"] for k in listed] for listed in listings)


def node_body(ip: str, n: int, register: bool = True) -> dict[str, Any]:
    """A body signed with the demo key; ``n`` makes each signature differ (none is a replay)."""
    body: dict[str, Any] = {
        "ip": ip,
        "id_org": "org-acme",
        "timestamp": iso(utcnow() - timedelta(seconds=n)),
    }
    if register:
        body.update(provider="S3", region="eu-west-1", version=f"1.{n}", status="online")
    return signed(body, DEMO_KEY)


def test_racing_first_registrations_of_a_node_create_it_once(cluster: Cluster) -> None:
    # The demo key signs: put it back, whatever the tests before did to the keys.
    assert cluster.request("POST", "/__mock/reset").status_code == 200
    for round_ in range(ROUNDS):
        ip = f"198.51.100.{round_ + 1}"

        responses = cluster.race([("POST", "/register", node_body(ip, n)) for n in range(RACERS)])

        assert [r.status_code for r in responses] == [200] * RACERS
        logged = sorted(e["event"] for e in cluster.events(ip))
        assert logged == ["created"] + ["updated"] * (RACERS - 1)


def test_racing_unregistrations_of_a_node_give_one_200_and_the_rest_404(cluster: Cluster) -> None:
    assert cluster.request("POST", "/__mock/reset").status_code == 200
    for round_ in range(ROUNDS):
        ip = f"198.51.100.{100 + round_}"
        assert cluster.request("POST", "/register", node_body(ip, 0)).status_code == 200

        responses = cluster.race(
            [("POST", "/unregister", node_body(ip, n, register=False)) for n in range(RACERS)]
        )

        assert sorted(r.status_code for r in responses) == [200] + [404] * (RACERS - 1)
        assert [e["event"] for e in cluster.events(ip)] == ["created", "deleted"]
