"""Bridge nodes: signed POST /register and POST /unregister, and the node-key cascade."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from connexion import FlaskApp
from starlette.testclient import TestClient

from flashback_contract import cli, signing
from flashback_contract.contract import load_spec
from flashback_contract.domain import EventContext, EventType, iso, utcnow
from flashback_contract.store import Store
from tests.conftest import OWNER, bearer

DEMO_KEY = (
    Path(__file__).resolve().parents[1]
    / "src/flashback_contract/mock/demo/orgkey-acme-1.private.pem"
)


def node_sign(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """The body `flashback-contract node-sign` prints."""
    capsys.readouterr()
    assert cli.main(["node-sign", *args]) == 0
    body: dict[str, Any] = json.loads(capsys.readouterr().out)
    return body


def register_body(
    capsys: pytest.CaptureFixture[str], key: Path = DEMO_KEY, **extra: str
) -> dict[str, Any]:
    args = ["--key", str(key), "--ip", extra.pop("ip", "198.51.100.7"), "--org", "org-acme"]
    for name, value in extra.items():
        args += [f"--{name}", value]
    return node_sign(capsys, *args)


def node_keys(client: TestClient, org: str = "org-acme") -> dict[str, list[str]]:
    response = client.get(f"/organization/{org}/key", headers=bearer(OWNER))
    return {k["id"]: [nk["nodeId"] for nk in k["nodeKeys"]] for k in response.json()["data"]}


def assert_refused(response: Any, status: int, code: str | None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["message"]
    if code is not None:
        assert body["errorCode"] == code
        assert body["errorMessage"] == body["message"]


def test_a_node_signed_with_an_org_key_registers_and_is_listed_in_node_keys(
    client: TestClient, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    body = register_body(capsys, provider="GCS", region="eu-west-1", services="5")

    response = client.post("/register", json=body)

    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Node registered successfully"}
    assert "198.51.100.7" in node_keys(client)["orgkey-acme-1"]
    with store.transaction() as uow:
        node = uow.node("198.51.100.7")
        [event] = uow.events()
    assert node is not None
    assert (node.org_id, node.key_id, node.provider.value, node.region, node.services) == (
        "org-acme",
        "orgkey-acme-1",
        "GCS",
        "eu-west-1",
        5,
    )
    assert (event.context, event.event, event.context_id, event.org_id, event.user_id) == (
        EventContext.flashbacknode,
        EventType.created,
        "198.51.100.7",
        "org-acme",
        None,
    )


def test_registering_again_refreshes_the_node(
    client: TestClient, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    client.post("/register", json=register_body(capsys, version="1.0.0"))

    response = client.post("/register", json=register_body(capsys, version="2.0.0"))

    assert response.status_code == 200
    with store.transaction() as uow:
        node = uow.node("198.51.100.7")
        events = uow.events()
    assert node is not None and node.version == "2.0.0"
    assert [e.event for e in events] == [EventType.updated, EventType.created]
    assert node_keys(client)["orgkey-acme-1"].count("198.51.100.7") == 1


def test_without_id_org_the_signature_is_checked_against_every_organization(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = node_sign(capsys, "--key", str(DEMO_KEY), "--ip", "198.51.100.8")
    assert "id_org" not in body

    assert client.post("/register", json=body).status_code == 200
    assert "198.51.100.8" in node_keys(client)["orgkey-acme-1"]


def test_the_signature_covers_every_field(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = register_body(capsys)

    response = client.post("/register", json={**body, "region": "somewhere-else"})

    assert_refused(response, 400, "INVALID_SIGNATURE")


def test_a_signature_by_a_key_the_server_does_not_hold_is_refused(
    client: TestClient, store: Store, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.pem"
    from flashback_contract.mock.crypto import generate_rsa_key_pair

    stranger.write_text(generate_rsa_key_pair()[0])

    response = client.post("/register", json=register_body(capsys, key=stranger))

    assert_refused(response, 400, "INVALID_SIGNATURE")
    with store.transaction() as uow:
        assert uow.node("198.51.100.7") is None
        assert uow.events() == []


def test_a_signature_of_another_organizations_key_is_refused_for_this_one(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = node_sign(capsys, "--key", str(DEMO_KEY), "--ip", "198.51.100.9", "--org", "org-globex")

    assert_refused(client.post("/register", json=body), 400, "INVALID_SIGNATURE")


def test_an_accepted_signature_cannot_be_replayed(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = register_body(capsys)
    assert client.post("/register", json=body).status_code == 200

    assert_refused(client.post("/register", json=body), 400, "REPLAYED_SIGNATURE")


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_timestamp_outside_the_window_is_refused(
    client: TestClient, capsys: pytest.CaptureFixture[str], skew: timedelta
) -> None:
    body = register_body(capsys, timestamp=iso(utcnow() + skew))

    assert_refused(client.post("/register", json=body), 400, "STALE_TIMESTAMP")


def test_the_window_is_a_setting(
    make_app: Callable[..., FlaskApp], capsys: pytest.CaptureFixture[str]
) -> None:
    body = register_body(capsys, timestamp=iso(utcnow() - timedelta(minutes=6)))

    with make_app(node_clock_skew_seconds=600).test_client() as client:
        assert client.post("/register", json=body).status_code == 200


def test_an_unknown_organization_is_refused(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = node_sign(capsys, "--key", str(DEMO_KEY), "--ip", "198.51.100.7", "--org", "org-nope")

    assert_refused(client.post("/register", json=body), 400, "UNKNOWN_ORGANIZATION")


def test_an_organization_without_keys_is_refused(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.delete("/organization/org-acme/key", headers=bearer(OWNER))

    assert_refused(client.post("/register", json=register_body(capsys)), 400, "NO_ORGANIZATION_KEY")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"signature": "not base64!"}, None),
        ({"signature": "QUJD"}, "INVALID_SIGNATURE"),  # base64, but not a signature
        ({"provider": "FTP"}, None),
        ({"ip": "not-an-ip"}, None),
        ({"timestamp": "yesterday"}, None),
        ({"timestamp": "2026-11-24T12:00:00"}, None),  # no offset
        ({"nodeServices": -1}, None),
        ({"id_org": "org acme"}, None),
    ],
)
def test_malformed_register_bodies_are_refused_cleanly(
    client: TestClient,
    store: Store,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    code: str | None,
) -> None:
    body = {**register_body(capsys), **change}

    response = client.post("/register", json=body)

    assert_refused(response, 400, code)
    with store.transaction() as uow:
        assert uow.node("198.51.100.7") is None


@pytest.mark.parametrize(
    "missing", ["provider", "ip", "status", "region", "version", "timestamp", "signature"]
)
def test_a_register_body_without_a_required_field_is_400(
    client: TestClient, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    body = register_body(capsys)
    del body[missing]

    response = client.post("/register", json=body)

    assert_refused(response, 400, None)
    assert f"'{missing}' is a required property" in response.json()["message"]


def test_node_operations_need_no_bearer_token_and_ignore_one(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = register_body(capsys)

    response = client.post("/register", json=body, headers=bearer("not-a-token"))

    assert response.status_code == 200


def test_unregister_removes_the_node_and_its_node_keys(
    client: TestClient, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    body = node_sign(
        capsys, "--key", str(DEMO_KEY), "--ip", "192.0.2.10", "--org", "org-acme", "--unregister"
    )
    assert set(body) == {"ip", "timestamp", "id_org", "signature"}

    response = client.post("/unregister", json=body)

    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Node unregistered successfully"}
    assert node_keys(client)["orgkey-acme-1"] == ["192.0.2.11"]
    with store.transaction() as uow:
        assert uow.node("192.0.2.10") is None
        [event] = uow.events()
    assert (event.context, event.event, event.context_id) == (
        EventContext.flashbacknode,
        EventType.deleted,
        "192.0.2.10",
    )


def test_unregistering_an_unknown_node_is_404(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = node_sign(capsys, "--key", str(DEMO_KEY), "--ip", "203.0.113.99", "--unregister")

    assert_refused(client.post("/unregister", json=body), 404, "NODE_NOT_FOUND")


def test_unregister_needs_a_valid_signature_too(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = node_sign(capsys, "--key", str(DEMO_KEY), "--ip", "192.0.2.10", "--unregister")

    assert_refused(
        client.post("/unregister", json={**body, "ip": "192.0.2.11"}), 400, "INVALID_SIGNATURE"
    )
    assert node_keys(client)["orgkey-acme-1"] == ["192.0.2.10", "192.0.2.11"]


def test_the_whole_story_generate_sign_register_delete_all_reregister_unregister(
    client: TestClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A new organization key; its private half is the node's credential.
    generated = client.post(
        "/organization/org-acme/key", headers={**bearer(OWNER), "Accept": "application/x-pem-file"}
    )
    key_file = tmp_path / "node.pem"
    key_file.write_text(generated.text)
    new_key = generated.headers["X-Organization-Key-Id"]

    assert client.post("/register", json=register_body(capsys, key=key_file)).status_code == 200
    assert node_keys(client)[new_key] == ["198.51.100.7"]

    deleted = client.delete("/organization/org-acme/key", headers=bearer(OWNER))
    assert deleted.json()["message"] == "Successfully deleted 4 organization key(s)"
    assert node_keys(client) == {}

    # The old key is gone: the node is refused until it has a new one.
    assert_refused(
        client.post("/register", json=register_body(capsys, key=key_file)),
        400,
        "NO_ORGANIZATION_KEY",
    )
    client.post("/organization/org-globex/key", headers=bearer("demo-globex-owner"))
    assert_refused(
        client.post(
            "/register", json=node_sign(capsys, "--key", str(key_file), "--ip", "198.51.100.7")
        ),
        400,
        "INVALID_SIGNATURE",
    )

    fresh = client.post(
        "/organization/org-acme/key", headers={**bearer(OWNER), "Accept": "application/x-pem-file"}
    )
    fresh_file = tmp_path / "fresh.pem"
    fresh_file.write_text(fresh.text)
    assert client.post("/register", json=register_body(capsys, key=fresh_file)).status_code == 200
    assert node_keys(client) == {fresh.headers["X-Organization-Key-Id"]: ["198.51.100.7"]}

    unregister = node_sign(
        capsys,
        "--key",
        str(fresh_file),
        "--ip",
        "198.51.100.7",
        "--org",
        "org-acme",
        "--unregister",
    )
    assert client.post("/unregister", json=unregister).status_code == 200
    assert node_keys(client) == {fresh.headers["X-Organization-Key-Id"]: []}


def test_deleting_one_key_refuses_its_nodes_afterwards(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.delete("/organization/org-acme/key/orgkey-acme-1", headers=bearer(OWNER))

    assert_refused(client.post("/register", json=register_body(capsys)), 400, "INVALID_SIGNATURE")


def test_canonical_bytes_are_sorted_compact_utf8_without_the_signature() -> None:
    body = {"region": "zürich", "ip": "192.0.2.1", "signature": "x", "nodeServices": 3}

    assert signing.canonical_bytes(body) == (
        '{"ip":"192.0.2.1","nodeServices":3,"region":"zürich"}'.encode()
    )


def test_node_sign_reports_an_unusable_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")

    assert cli.main(["node-sign", "--key", str(bad), "--ip", "192.0.2.1"]) == 2
    assert "cannot sign" in capsys.readouterr().err


# -- Contract fidelity: documented statuses and both timestamp forms -----------------


def test_node_operations_document_400_for_refusals_and_no_401() -> None:
    paths = load_spec()["paths"]

    register = paths["/register"]["post"]["responses"]
    unregister = paths["/unregister"]["post"]["responses"]

    assert set(register) == {"200", "400", "500"}
    assert set(unregister) == {"200", "400", "404", "500"}


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("foreign signature", "INVALID_SIGNATURE"),
        ("stale timestamp", "STALE_TIMESTAMP"),
        ("replay", "REPLAYED_SIGNATURE"),
        ("unknown organization", "UNKNOWN_ORGANIZATION"),
        ("no key to verify", "NO_ORGANIZATION_KEY"),
    ],
)
def test_every_signature_refusal_is_a_400_with_its_error_code(
    client: TestClient, store: Store, capsys: pytest.CaptureFixture[str], case: str, code: str
) -> None:
    body = register_body(capsys)
    if case == "foreign signature":
        body = node_sign(
            capsys, "--key", str(DEMO_KEY), "--ip", "198.51.100.9", "--org", "org-globex"
        )
    elif case == "stale timestamp":
        body = register_body(capsys, timestamp=str(int(utcnow().timestamp()) - 3600))
    elif case == "replay":
        assert client.post("/register", json=body).status_code == 200
    elif case == "unknown organization":
        body = node_sign(capsys, "--key", str(DEMO_KEY), "--ip", "198.51.100.7", "--org", "org-x")
    else:
        client.delete("/organization/org-acme/key", headers=bearer(OWNER))
    with store.transaction() as uow:
        before = uow.everything()

    response = client.post("/register", json=body)

    assert_refused(response, 400, code)
    with store.transaction() as uow:
        assert uow.everything() == before


def test_node_sign_sends_digits_as_epoch_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    body = register_body(capsys, timestamp="1795521600")

    assert body["timestamp"] == 1795521600
    assert b'"timestamp":1795521600' in signing.canonical_bytes(body)
    assert register_body(capsys, timestamp="2026-11-24T12:00:00Z")["timestamp"] == (
        "2026-11-24T12:00:00Z"
    )


def test_node_sign_defaults_to_the_clients_status_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert register_body(capsys)["status"] == "ONLINE"


def test_a_node_signing_with_epoch_seconds_registers(
    client: TestClient, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    body = register_body(capsys, timestamp=str(int(utcnow().timestamp())))
    assert isinstance(body["timestamp"], int)

    assert client.post("/register", json=body).status_code == 200
    with store.transaction() as uow:
        assert uow.node("198.51.100.7") is not None


@pytest.mark.parametrize("form", ["rfc3339", "epoch"])
@pytest.mark.parametrize(("minutes", "accepted"), [(-4, True), (4, True), (-6, False), (6, False)])
def test_both_timestamp_forms_share_one_clock_skew_window(
    client: TestClient, capsys: pytest.CaptureFixture[str], form: str, minutes: int, accepted: bool
) -> None:
    moment = utcnow() + timedelta(minutes=minutes)
    stamp = iso(moment) if form == "rfc3339" else str(int(moment.timestamp()))

    response = client.post("/register", json=register_body(capsys, timestamp=stamp))

    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert_refused(response, 400, "STALE_TIMESTAMP")


def test_the_timestamp_is_signed_in_the_form_it_is_sent(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    now = utcnow().replace(microsecond=0)
    body = register_body(capsys, timestamp=str(int(now.timestamp())))

    # The same moment in the other form is other bytes: the signature no longer verifies.
    response = client.post(
        "/register", json={**body, "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    )

    assert_refused(response, 400, "INVALID_SIGNATURE")


@pytest.mark.parametrize(
    "timestamp", [True, 1795521600.5, -1, 10**13, {"seconds": 1}, ["2026-11-24T12:00:00Z"], None]
)
def test_a_timestamp_of_another_type_is_a_400_envelope_and_writes_nothing(
    client: TestClient, store: Store, capsys: pytest.CaptureFixture[str], timestamp: object
) -> None:
    body = {**register_body(capsys), "timestamp": timestamp}

    response = client.post("/register", json=body)

    assert_refused(response, 400, None)
    assert set(response.json()) == {"success", "message"}  # refused by the contract itself
    with store.transaction() as uow:
        assert uow.node("198.51.100.7") is None
