"""Opaque cursors for keyset pagination: base64url JSON that clients pass back unchanged."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from agentkeep.errors import InvalidInput

CURSOR_MAX_LENGTH = 512
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class InvalidCursor(InvalidInput):
    type_slug = "invalid-cursor"
    title = "Invalid cursor"


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Decode a cursor from encode_cursor; anything else is a 422 problem."""
    if not cursor or len(cursor) > CURSOR_MAX_LENGTH:
        raise InvalidCursor("The cursor is not one this API returned.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("The cursor is not one this API returned.") from exc
    if not isinstance(position, dict):
        raise InvalidCursor("The cursor is not one this API returned.")
    return position
