"""Node request signatures: the one definition the server and `node-sign` share.

The documentation (pages ``post__register`` and ``post__unregister``) says node requests carry
an RSA signature made with an organization private key and a timestamp that "must be recent to
prevent replay attacks", but not which bytes are signed, how, or how recent. This project
defines it:

- algorithm: RSASSA-PKCS1-v1_5 with SHA-256, by an organization key's RSA private key;
- signed bytes: the request body as sent, without ``signature``, serialised as canonical JSON
  (keys sorted, no whitespace, ``,`` and ``:`` separators, UTF-8, non-ASCII kept as is). The
  ``timestamp`` is signed in the form it is sent: an RFC 3339 string as that JSON string
  (``"2026-11-24T12:00:00Z"``), epoch seconds as that JSON integer (``1795521600``);
- encoding: standard base64 (RFC 4648, with padding);
- freshness: ``timestamp``, either form, within the server's window of its clock (default 300 s
  either way);
- replay: a signature the server has accepted once is refused ever after.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNATURE_FIELD = "signature"


class MalformedSignature(ValueError):
    """The signature is not base64."""


class MalformedTimestamp(ValueError):
    """The timestamp is neither an RFC 3339 date-time with an offset nor epoch seconds."""


def signed_moment(timestamp: object) -> datetime:
    """The moment a node request's ``timestamp`` names: RFC 3339 string or epoch seconds."""
    # bool is an int in Python, never a timestamp in JSON.
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        try:
            return datetime.fromtimestamp(timestamp, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise MalformedTimestamp("timestamp is out of range") from exc
    if not isinstance(timestamp, str):
        raise MalformedTimestamp("timestamp is neither an RFC 3339 date-time nor epoch seconds")
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError as exc:
        raise MalformedTimestamp("timestamp is not an RFC 3339 date-time") from exc
    if moment.tzinfo is None:
        raise MalformedTimestamp("timestamp needs a time zone offset")
    return moment


def canonical_bytes(body: Mapping[str, Any]) -> bytes:
    """The bytes a node signs: every field but ``signature``, as sent, in canonical JSON.

    Both forms of ``timestamp`` are signed as they appear in the body: a string as a JSON
    string, epoch seconds as a JSON integer.
    """
    unsigned = {k: v for k, v in body.items() if k != SIGNATURE_FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sign(body: Mapping[str, Any], private_key_pem: str | bytes) -> str:
    """The base64 signature of a body with an organization private key (PEM)."""
    pem = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    private_key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError("an organization key is an RSA private key")
    raw = private_key.sign(canonical_bytes(body), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def signed(body: Mapping[str, Any], private_key_pem: str | bytes) -> dict[str, Any]:
    """The body with its ``signature`` field added."""
    return {**body, SIGNATURE_FIELD: sign(body, private_key_pem)}


def decode_signature(signature: str) -> bytes:
    try:
        return base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedSignature("signature is not valid base64") from exc


def verifies(body: Mapping[str, Any], public_key_pem: str) -> bool:
    """True when the body's signature was made by the private half of ``public_key_pem``."""
    raw = decode_signature(str(body[SIGNATURE_FIELD]))
    public_key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    try:
        public_key.verify(raw, canonical_bytes(body), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def signature_digest(signature: str) -> str:
    """What the replay record keeps of an accepted signature."""
    return hashlib.sha256(decode_signature(signature)).hexdigest()
