"""Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`,
`webhook-timestamp` and `webhook-signature`, made with the specification's reference library.

A secret is `whsec_` and base64 of 32 random bytes. While a rotated-out secret is still in its
overlap, a request carries two signatures, space-separated, and a receiver holding either
secret verifies it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from standardwebhooks import Webhook as StandardWebhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def body_of(payload: dict[str, Any]) -> bytes:
    """The bytes sent and signed: the same for every attempt of a delivery."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


def message_id(event_id: str) -> str:
    return f"msg_{event_id}"


def signed_headers(secrets_: Sequence[str], msg_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, one signature per secret (newest first)."""
    signatures = " ".join(StandardWebhook(secret).sign(msg_id, at, body) for secret in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
