"""A webhook's signing secrets: encrypted at rest, the previous one kept during its overlap."""

from __future__ import annotations

from datetime import datetime

from agentkeep.errors import ServiceUnavailable
from agentkeep.security.secretbox import SecretBox, SecretDecryptionError
from agentkeep.webhooks.models import Webhook


class EncryptionNotConfigured(ServiceUnavailable):
    type_slug = "encryption-not-configured"
    title = "Secrets encryption is not configured"

    def __init__(self) -> None:
        super().__init__(
            "Webhook signing secrets are stored encrypted, and this server has no encryption key: "
            "set SECRETS_ENCRYPTION_KEYS (generate a key with `agentkeep gen-secret "
            "--encryption-key`) and restart."
        )


class SecretUnreadable(Exception):
    """No configured key decrypts the webhook's secret (or none is configured)."""


def encrypt(secretbox: SecretBox | None, secret: str) -> str:
    if secretbox is None:
        raise EncryptionNotConfigured()
    return secretbox.encrypt(secret)


def signing_secrets(secretbox: SecretBox | None, webhook: Webhook, now: datetime) -> list[str]:
    """The current secret, then the previous one while its overlap lasts."""
    if secretbox is None:
        raise SecretUnreadable("SECRETS_ENCRYPTION_KEYS is not set")
    ciphertexts = [webhook.secret_ciphertext]
    expires = webhook.previous_secret_expires_at
    if webhook.previous_secret_ciphertext is not None and expires is not None and expires > now:
        ciphertexts.append(webhook.previous_secret_ciphertext)
    try:
        return [secretbox.decrypt(ciphertext) for ciphertext in ciphertexts]
    except SecretDecryptionError:
        raise SecretUnreadable("no key in SECRETS_ENCRYPTION_KEYS decrypts the signing secret") from None
