"""The API key format: `ak_` + 43 base62 characters (256 random bits) + a 6-character
base62 CRC32 of them, so a mistyped key is refused without a database lookup.

Only HMAC-SHA256(key, secret) is stored. The HMAC key is API_KEY_HMAC_KEY, or derived from
JWT_SECRET when unset (then rotating JWT_SECRET invalidates every API key).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib

from agentkeep.config import Settings

API_KEY_PREFIX = "ak_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
BODY_LENGTH = 43  # 43 * log2(62) > 256 bits
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
DISPLAY_LENGTH = len(API_KEY_PREFIX) + 8
_FORMAT = re.compile(rf"^{API_KEY_PREFIX}[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}$")
_DERIVATION_LABEL = b"agentkeep api-key hmac v1"


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def new_api_key() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return API_KEY_PREFIX + body + _checksum(body)


def looks_like_api_key(value: str) -> bool:
    return value.startswith(API_KEY_PREFIX)


def is_well_formed(value: str) -> bool:
    """Format and checksum; a typo fails here, before any database lookup."""
    if not _FORMAT.match(value):
        return False
    body, checksum = value[len(API_KEY_PREFIX) : -CHECKSUM_LENGTH], value[-CHECKSUM_LENGTH:]
    return hmac.compare_digest(_checksum(body), checksum)


def display_prefix(value: str) -> str:
    return value[:DISPLAY_LENGTH]


class ApiKeyHasher:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeyHasher:
        if settings.api_key_hmac_key is not None:
            return cls(settings.api_key_hmac_key.get_secret_value().encode())
        secret = settings.jwt_secret.get_secret_value().encode()
        return cls(hmac.new(secret, _DERIVATION_LABEL, hashlib.sha256).digest())

    def hash(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
