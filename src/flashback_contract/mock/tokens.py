"""JWT access tokens: HS256, signed with the server's secret, accepted beside the demo tokens."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import jwt

from flashback_contract.store import Store

ALGORITHM = "HS256"
SECRET_SETTING = "jwt_secret"


def jwt_secret(store: Store, configured: str | None) -> str:
    """The configured secret, or a development secret generated once and kept with the store."""
    if configured:
        return configured
    with store.transaction() as uow:
        return uow.put_setting_if_absent(SECRET_SETTING, secrets.token_urlsafe(32))


def issue(secret: str, user_id: str, ttl: timedelta, now: datetime) -> str:
    claims = {"sub": user_id, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def user_of(secret: str, token: str) -> str | None:
    """The user a valid token names; None for an expired, tampered or foreign token."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.InvalidTokenError:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None
