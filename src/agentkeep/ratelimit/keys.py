"""Identities for limit keys: keyed hashes, so Redis never holds an address or a username.

A plain SHA-256 of an IPv4 address can be reversed by trying all 2**32 of them; an HMAC
under a key derived from JWT_SECRET cannot, and every instance of a deployment (same secret)
derives the same key, so they share counters.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

_KEY_CONTEXT = b"agentkeep/ratelimit/v1"
DIGEST_CHARS = 32


def derive_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def keyed_hash(key: bytes, value: str) -> str:
    """128 bits of HMAC-SHA256 in hex: short keys, no collision in practice."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:DIGEST_CHARS]


def normalise_username(username: str) -> str:
    """The form under which `Alice`, ` alice ` and its full-width twin count as one account."""
    return unicodedata.normalize("NFKC", username).strip().casefold()
