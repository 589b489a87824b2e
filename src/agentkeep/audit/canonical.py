"""The canonical serialisation each record's hash covers, and the hash itself.

Canonical form (version 1), fixed so any implementation can re-derive it:
- a JSON object of exactly CANONICAL_FIELDS plus "v": 1, keys sorted, no whitespace
  (separators "," and ":"), ASCII only (every non-ASCII character as a \\uXXXX escape);
- the timestamp in UTC as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (always six fractional digits);
- UUIDs as lower-case hyphenated strings; absent values as null;
- details as the sanitised JSON value (see redaction.py: string keys, no float beyond
  +/-1e15, no NaN), nested keys sorted too.
The hash is the lower-case hex SHA-256 of that UTF-8 text. The record's own `hash` is
never part of it; `prev_hash` is, which links each record to the one before.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

CANONICAL_VERSION = 1
CANONICAL_FIELDS = (
    "id",
    "chain",
    "sequence",
    "timestamp",
    "user_id",
    "org_id",
    "actor_type",
    "action",
    "resource_type",
    "resource_id",
    "status",
    "details",
    "ip_address",
    "user_agent",
    "request_id",
    "prev_hash",
)


class HashableRecord(Protocol):
    id: uuid.UUID
    chain: str
    sequence: int | None
    timestamp: datetime
    user_id: uuid.UUID | None
    org_id: uuid.UUID | None
    actor_type: str
    action: str
    resource_type: str | None
    resource_id: str | None
    status: str
    details: dict[str, Any]
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    prev_hash: str | None


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps are timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    return value


def canonical_content(record: HashableRecord | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(record, Mapping):
        content = {name: _field(record.get(name)) for name in CANONICAL_FIELDS}
    else:
        content = {name: _field(getattr(record, name)) for name in CANONICAL_FIELDS}
    content["v"] = CANONICAL_VERSION
    return content


def canonical_bytes(record: HashableRecord | Mapping[str, Any]) -> bytes:
    text = json.dumps(
        canonical_content(record),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return text.encode("utf-8")


def record_hash(record: HashableRecord | Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()
