"""Encryption of secrets at rest (provider API keys), with key rotation.

Keys come from SECRETS_ENCRYPTION_KEYS, newest first. New writes use the newest key; every
listed key still decrypts, so rotating is: prepend a new key, re-encrypt (`rotate`), then
drop the old key. Fernet gives authenticated encryption (AES-128-CBC + HMAC-SHA256) with a
timestamp; a tampered or foreign ciphertext fails loudly instead of decrypting to garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from agentkeep.config import Settings


class SecretDecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def validate_keys(keys: Sequence[str]) -> None:
    """Raise ValueError naming the position of the first malformed key (never the key)."""
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ValueError(
                f"key #{position} is not a valid key; "
                "generate one with `agentkeep gen-secret --encryption-key`"
            ) from None


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        validate_keys(keys)
        self._fernet = MultiFernet([Fernet(key.encode("ascii")) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretDecryptionError("no configured key decrypts this secret") from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the newest key (for a rotation sweep)."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise SecretDecryptionError("no configured key decrypts this secret") from None


def secretbox_from_settings(settings: Settings) -> SecretBox | None:
    """The box for SECRETS_ENCRYPTION_KEYS, or None when no key is configured."""
    keys = [key.get_secret_value() for key in settings.secrets_encryption_keys]
    return SecretBox(keys) if keys else None
