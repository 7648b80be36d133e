"""POST /__mock/token: a JWT the running mock accepts, whatever its store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from connexion import FlaskApp

from flashback_contract import cli
from tests.test_cli_serve import start_serve
from tests.test_sessions import local_client


@pytest.mark.slow
def test_a_memory_server_accepts_the_token_it_issues(tmp_path: Path) -> None:
    process, base_url = start_serve("--store", "memory://", cwd=tmp_path)
    try:
        issued = httpx.post(
            f"{base_url}/__mock/token", json={"user": "user-acme-admin", "ttl": 600}
        )
        token = issued.json()["token"]
        keys = httpx.get(
            f"{base_url}/organization/org-acme/key", headers={"Authorization": f"Bearer {token}"}
        )
        in_a_session = httpx.get(
            f"{base_url}/__session/w1/organization/org-acme/key",
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        process.terminate()
        process.communicate(timeout=30)

    assert issued.status_code == 200
    expires = datetime.fromisoformat(issued.json()["expiresAt"])
    assert timedelta(seconds=590) < expires - datetime.now(expires.tzinfo) <= timedelta(seconds=600)
    assert keys.status_code == 200
    assert in_a_session.status_code == 200


def test_an_unknown_user_is_a_404_envelope(make_app: Callable[..., FlaskApp]) -> None:
    with local_client(make_app()) as client:
        response = client.post("/__mock/token", json={"user": "user-nobody"})

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "message": "No user 'user-nobody' in this mock's state",
    }


def test_the_token_follows_the_ttl_default(make_app: Callable[..., FlaskApp]) -> None:
    with local_client(make_app()) as client:
        issued = client.post("/__mock/token", json={"user": "user-acme-owner"}).json()

    expires = datetime.fromisoformat(issued["expiresAt"])
    assert timedelta(minutes=59) < expires - datetime.now(expires.tzinfo) <= timedelta(hours=1)


def test_the_token_command_says_when_to_ask_the_running_mock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["token", "--help"])

    help_text = " ".join(capsys.readouterr().out.split())
    assert "memory://" in help_text
    assert "POST /__mock/token" in help_text
