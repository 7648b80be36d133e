"""JWT access tokens: `flashback-contract token` and the server accepting them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from connexion import FlaskApp

from flashback_contract import Settings, cli, create_app
from flashback_contract.domain import utcnow
from flashback_contract.mock import tokens
from flashback_contract.store import open_store
from tests.conftest import bearer


def token_from_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert cli.main(["token", *args]) == 0
    return capsys.readouterr().out.strip()


def test_a_token_printed_for_a_store_is_accepted_by_the_server_on_that_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    token = token_from_cli(capsys, "--user", "user-acme-admin", "--store", url)

    with create_app(Settings(store_url=url)).test_client() as client:
        response = client.get("/organization/org-acme/key", headers=bearer(token))

    assert response.status_code == 200
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "user-acme-admin"
    assert claims["exp"] - claims["iat"] == 3600


def test_the_jwt_carries_the_users_role(make_app: Callable[..., FlaskApp]) -> None:
    secret = "s3cret-for-tests-only-" + "0123456789abcdef" * 4
    member = tokens.issue(secret, "user-acme-member", timedelta(minutes=5), utcnow())

    with make_app(jwt_secret=secret).test_client() as client:
        listed = client.get("/repo/repo-acme-main/ai/apikey", headers=bearer(member))
        refused = client.get("/organization/org-acme/key", headers=bearer(member))

    assert (listed.status_code, refused.status_code) == (200, 403)


@pytest.mark.parametrize(
    "make_token",
    [
        lambda s: tokens.issue(s, "user-acme-owner", timedelta(seconds=-1), utcnow()),  # expired
        lambda s: tokens.issue(
            "another-secret-0123456789abcdef0123", "user-acme-owner", timedelta(minutes=5), utcnow()
        ),
        lambda s: tokens.issue(s, "user-acme-owner", timedelta(minutes=5), utcnow())[:-2] + "xx",
        lambda s: tokens.issue(s, "user-nobody", timedelta(minutes=5), utcnow()),  # unknown user
        lambda s: jwt.encode({"sub": "user-acme-owner"}, s, algorithm="HS256"),  # no expiry
        lambda s: jwt.encode({"sub": "user-acme-owner", "exp": 9999999999}, s, algorithm="HS512"),
    ],
    ids=["expired", "wrong-secret", "tampered", "unknown-user", "no-exp", "other-algorithm"],
)
def test_bad_jwts_are_401(
    make_app: Callable[..., FlaskApp], make_token: Callable[[str], str]
) -> None:
    secret = "s3cret-for-tests-only-" + "0123456789abcdef" * 4

    with make_app(jwt_secret=secret).test_client() as client:
        response = client.get("/organization/org-acme/key", headers=bearer(make_token(secret)))

    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Provided token is not valid"}


def test_without_a_configured_secret_one_is_generated_once_per_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'kept.sqlite3'}")
    first = tokens.jwt_secret(store, None)
    second = tokens.jwt_secret(store, None)
    store.close()

    assert first == second and len(first) >= 32
    assert tokens.jwt_secret(open_store("memory://"), "configured") == "configured"


def test_the_token_command_refuses_an_unknown_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["token", "--user", "user-nobody", "--store", "memory://"])

    assert status == 2
    assert "no user 'user-nobody'" in capsys.readouterr().err
