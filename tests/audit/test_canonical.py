"""The canonical form is fixed: the same content always hashes the same, any change does not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agentkeep.audit.canonical import canonical_bytes, record_hash

RECORD: dict[str, Any] = {
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "chain": "global",
    "sequence": 7,
    "timestamp": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    "user_id": uuid.UUID("00000000-0000-0000-0000-000000000001"),
    "org_id": None,
    "actor_type": "user",
    "action": "login_success",
    "resource_type": "user",
    "resource_id": "42",
    "status": "success",
    "details": {"b": [1, 2.5, "x"], "a": {"z": None, "y": True}, "é": "ü\r\n"},
    "ip_address": "203.0.113.7",
    "user_agent": "curl/8",
    "request_id": "req",
    "prev_hash": "0" * 64,
}


def test_canonical_form_is_sorted_compact_ascii_json_with_fixed_timestamps() -> None:
    text = canonical_bytes(RECORD).decode()
    assert text.startswith('{"action":"login_success","actor_type":"user","chain":"global",')
    assert '"timestamp":"2026-01-02T03:04:05.000006Z"' in text
    assert '"details":{"a":{"y":true,"z":null},"b":[1,2.5,"x"],"\\u00e9":"\\u00fc\\r\\n"}' in text
    assert text.endswith('"v":1}')
    assert " " not in text.replace("curl/8", "")


def test_hash_is_stable_across_releases() -> None:
    # Pinned: changing the canonical form breaks every stored chain.
    assert record_hash(RECORD) == "77e35915de63d2aab842d65bb71405a119e2fc56cf09ccd99ae3f3702968a13b"


def test_hash_ignores_key_order_and_timezone_rendering() -> None:
    reordered = dict(reversed(list(RECORD.items())))
    reordered["details"] = {"é": "ü\r\n", "a": {"y": True, "z": None}, "b": [1, 2.5, "x"]}
    reordered["timestamp"] = RECORD["timestamp"].astimezone(timezone(timedelta(hours=5)))
    assert record_hash(reordered) == record_hash(RECORD)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sequence", 8),
        ("timestamp", datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC)),
        ("user_id", None),
        ("action", "login_failed"),
        ("status", "failure"),
        ("details", {"b": [1, 2.5, "x"], "a": {"z": None, "y": False}, "é": "ü\r\n"}),
        ("ip_address", "203.0.113.8"),
        ("prev_hash", "1" * 64),
        ("chain", "org:1"),
    ],
)
def test_every_content_field_changes_the_hash(field: str, value: Any) -> None:
    assert record_hash({**RECORD, field: value}) != record_hash(RECORD)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        record_hash({**RECORD, "timestamp": datetime(2026, 1, 2)})
