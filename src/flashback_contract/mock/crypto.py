"""Key material: RSA key pairs for organization keys, AI API key credentials, secret encryption."""

from __future__ import annotations

import logging
import secrets

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

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


class SecretBox:
    """Authenticated symmetric encryption (Fernet) for secrets at rest."""

    def __init__(self, key: str | None) -> None:
        if not key:
            log.warning(
                "FLASHBACK_ENCRYPTION_KEY is not set: AI API key secrets are encrypted with a "
                "development key generated for this process only"
            )
            key = Fernet.generate_key().decode("ascii")
        self._fernet = Fernet(key.encode("ascii"))

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        return self._fernet.decrypt(token).decode("utf-8")
