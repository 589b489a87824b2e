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

Version 2 serves records written under AUDIT_HMAC_KEY (keys.py), by the same rules with
"v": 2. Its insert form, which the insert MAC covers, is the v1 fields without `sequence`
and `prev_hash` (unknown when the record is written) plus `key_id`; its sealed form, which
the keyed chain link covers, is every v1 field plus `key_id` and `mac`.
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
KEYED_VERSION = 2
INSERT_FIELDS = (*(name for name in CANONICAL_FIELDS if name not in {"sequence", "prev_hash"}), "key_id")
SEALED_FIELDS = (*CANONICAL_FIELDS, "key_id", "mac")


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
    key_id: str | None
    mac: str | None


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


def _content(
    record: HashableRecord | Mapping[str, Any], fields: tuple[str, ...], version: int
) -> dict[str, Any]:
    if isinstance(record, Mapping):
        content = {name: _field(record.get(name)) for name in fields}
    else:
        content = {name: _field(getattr(record, name)) for name in fields}
    content["v"] = version
    return content


def canonical_content(record: HashableRecord | Mapping[str, Any]) -> dict[str, Any]:
    return _content(record, CANONICAL_FIELDS, CANONICAL_VERSION)


def _serialise(content: dict[str, Any]) -> bytes:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("utf-8")


def canonical_bytes(record: HashableRecord | Mapping[str, Any]) -> bytes:
    return _serialise(canonical_content(record))


def insert_bytes(record: HashableRecord | Mapping[str, Any]) -> bytes:
    """The v2 insert form: what the insert MAC covers."""
    return _serialise(_content(record, INSERT_FIELDS, KEYED_VERSION))


def sealed_bytes(record: HashableRecord | Mapping[str, Any]) -> bytes:
    """The v2 sealed form: what a keyed chain link covers."""
    return _serialise(_content(record, SEALED_FIELDS, KEYED_VERSION))


def record_hash(record: HashableRecord | Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()
