"""Sanitising at the record() boundary: no secret, no unbounded value, only portable JSON.

Everything stored in an audit record passes through here. Secrets are removed by key name
and by value shape (agentkeep.security.secret_values, shared with the log redaction); sizes
are bounded; values are reduced to JSON that PostgreSQL JSONB and SQLite both return
unchanged, so the record's hash can be re-derived from what is stored.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from agentkeep.audit.canonical import format_timestamp
from agentkeep.security.secret_values import REDACTED, redact_secret_values

TRUNCATED_SUFFIX = "...[truncated]"
MAX_STRING = 1024
MAX_ITEMS = 50
MAX_DEPTH = 6
MAX_DETAILS_BYTES = 8192
# Floats beyond this are rendered by PostgreSQL without an exponent and come back as ints.
MAX_EXACT_FLOAT = 1e15

_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|passphrase|secret|token|access_token|refresh_token|id_token|"
    r"api_key|apikey|authorization|cookie|set_cookie|private_key|credential|credentials|"
    r"session|otp)($|_)"
)
# PostgreSQL text cannot hold NUL; lone surrogates cannot be encoded as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UnserialisableDetail(TypeError):
    """A details value has a type the audit log does not know how to store."""


def is_secret_key(key: str) -> bool:
    normalised = re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")
    return bool(_SECRET_KEY.search(normalised))


def clean_text(value: str, limit: int = MAX_STRING) -> str:
    """Remove secret-looking substrings and unstorable characters; bound the length."""
    value = redact_secret_values(_UNSTORABLE.sub("\ufffd", value))
    if len(value) > limit:
        value = value[: max(0, limit - len(TRUNCATED_SUFFIX))] + TRUNCATED_SUFFIX
    return value


def clean_optional_text(value: object | None, limit: int) -> str | None:
    if value is None:
        return None
    return clean_text(str(value), limit)


def _clean(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if value != value or abs(value) >= MAX_EXACT_FLOAT:  # NaN, infinities, huge
            return repr(value)
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, enum.Enum):
        return _clean(value.value, depth)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value) if value.tzinfo else clean_text(value.isoformat())
    if isinstance(value, date | Decimal):
        return str(value)
    if depth >= MAX_DEPTH:
        return TRUNCATED_SUFFIX
    if isinstance(value, Mapping):
        cleaned: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                cleaned["_truncated_keys"] = len(value) - MAX_ITEMS
                break
            name = clean_text(str(key), 128)
            cleaned[name] = REDACTED if is_secret_key(name) else _clean(item, depth + 1)
        return cleaned
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        cleaned_items = [_clean(item, depth + 1) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            cleaned_items.append(f"...[{len(items) - MAX_ITEMS} more]")
        return cleaned_items
    raise UnserialisableDetail(f"audit details cannot hold a {type(value).__name__}")


def sanitise_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return redacted, bounded, portable JSON details (a dict, possibly empty)."""
    if not details:
        return {}
    cleaned = _clean(details, 0)
    size = len(json.dumps(cleaned, ensure_ascii=True, separators=(",", ":")))
    if size > MAX_DETAILS_BYTES:
        return {"_truncated": True, "_original_size": size, "keys": sorted(cleaned)[:MAX_ITEMS]}
    assert isinstance(cleaned, dict)
    return cleaned
