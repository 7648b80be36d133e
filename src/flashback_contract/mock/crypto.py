"""Key material: RSA key pairs for organization keys, AI API key credentials and their hashes."""

from __future__ import annotations

import hashlib
import os
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RSA_KEY_SIZE = 2048


def generate_rsa_key_pair() -> tuple[str, str]:
    """Return ``(private_pem, public_pem)`` of a new RSA 2048-bit key pair.

    The private key is PKCS#1 (``-----BEGIN RSA PRIVATE KEY-----``) as the
    documentation shows; the public key is SubjectPublicKeyInfo.
    """
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem


def new_ai_api_key() -> str:
    """A new AI API key id in the documented ``FB_AI_...`` shape."""
    return "FB_AI_" + secrets.token_hex(16)


def new_ai_api_secret() -> str:
    """A new AI API key secret: 256 bits from the OS's secure source."""
    return secrets.token_urlsafe(32)


def secret_sha256(secret: str) -> str:
    """The one-way hash kept in place of an AI API key secret (hex SHA-256).

    The secret is 256 random bits, so a plain SHA-256 cannot be reversed or guessed; a slow,
    salted hash is for low-entropy passwords. The mock never shows a secret again, so it never
    needs the secret back.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def unseen_secret_hashes(count: int) -> list[str]:
    """Stored hashes for ``count`` seeded keys, whose secrets nobody ever saw.

    The SHA-256 of a random secret never shown is, to anyone, a random 256-bit value, and no
    secret can be found that matches it: so these are 256 random bits each, from one read of
    the OS's secure source (a read per key is most of a large seed's load).
    """
    pool = os.urandom(32 * count)
    return [pool[start : start + 32].hex() for start in range(0, 32 * count, 32)]
