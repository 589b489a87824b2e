"""Recognise secrets by their shape, wherever they turn up in text (audit records, log lines).

The shapes are those the product issues or stores (docs/auth.md, docs/orgs.md,
docs/providers.md): access tokens (JWTs), `akr_` refresh tokens, `ak_` API keys, the model
providers' `sk-...` keys, and credentials after a `Bearer` or `Basic` scheme.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

SECRET_VALUE_PATTERNS = (
    # JSON Web Tokens (header.payload[.signature]; the header always starts with eyJ).
    re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}(\.[A-Za-z0-9_\-]*)?"),
    # "Bearer <token>" / "Basic <credentials>" as found in Authorization headers.
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    # Refresh tokens: akr_ + URL-safe base64.
    re.compile(r"\bakr_[A-Za-z0-9_\-]{8,}"),
    # API keys: ak_ + base62.
    re.compile(r"\bak_[A-Za-z0-9_\-]{8,}"),
    # OpenAI-style provider keys ("sk-...", "sk-proj-..."), as stored for model providers.
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
)


def redact_secret_values(text: str) -> str:
    """Replace every secret-shaped substring of `text` with [REDACTED]."""
    for pattern in SECRET_VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text
