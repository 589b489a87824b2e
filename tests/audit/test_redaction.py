"""Secrets never pass record()'s boundary; sizes are bounded; values are portable JSON."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from agentkeep.audit.redaction import (
    MAX_DETAILS_BYTES,
    MAX_STRING,
    UnserialisableDetail,
    clean_text,
    sanitise_details,
)
from agentkeep.security.secret_values import REDACTED

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "new_password",
        "token",
        "access_token",
        "refresh_token",
        "client_secret",
        "API_KEY",
        "api-key",
        "Authorization",
        "cookie",
        "Set-Cookie",
    ],
)
def test_secret_keys_are_redacted_whatever_their_case(key: str) -> None:
    assert sanitise_details({key: "hunter2hunter2"}) == {key: REDACTED}


def test_secret_keys_are_redacted_when_nested_in_dicts_and_lists() -> None:
    details = {
        "request": {"headers": [{"authorization": "Basic abc"}, {"x-ok": "1"}]},
        "form": {"password": "p"},
    }
    assert sanitise_details(details) == {
        "request": {"headers": [{"authorization": REDACTED}, {"x-ok": "1"}]},
        "form": {"password": REDACTED},
    }


def test_harmless_keys_that_merely_mention_tokens_are_kept() -> None:
    assert sanitise_details({"tokens_used": 12, "username": "ann"}) == {"tokens_used": 12, "username": "ann"}


@pytest.mark.parametrize(
    "value",
    [
        JWT,
        f"Bearer {JWT}",
        "bearer abcdefghijklmnop",
        "ak_live_0123456789abcdef",
        "sk-proj-0123456789abcdefABCD",
        f"sent {JWT} by mistake",
    ],
)
def test_secret_looking_values_are_redacted_under_any_key(value: str) -> None:
    cleaned = sanitise_details({"note": value})["note"]
    assert REDACTED in cleaned
    assert "0123456789abcdef" not in cleaned
    assert "dozjgNryP4J3jVmNHl0w5N" not in cleaned
    assert "abcdefghijklmnop" not in cleaned


def test_long_strings_are_truncated_and_details_size_is_capped() -> None:
    assert len(clean_text("x" * 10_000)) == MAX_STRING
    cleaned = sanitise_details({f"k{i}": "y" * 900 for i in range(40)})
    assert cleaned["_truncated"] is True
    assert len(json.dumps(cleaned)) < MAX_DETAILS_BYTES


def test_cr_lf_stay_data_and_nul_is_replaced() -> None:
    cleaned = sanitise_details({"name": "evil\r\nINFO fake log line\x00"})
    assert cleaned["name"] == "evil\r\nINFO fake log line\ufffd"


def test_values_become_portable_json() -> None:
    ident = uuid.uuid4()
    cleaned = sanitise_details(
        {"id": ident, "at": datetime(2026, 1, 1, tzinfo=UTC), "big": 1e20, "nan": float("nan"), "set": {1}}
    )
    assert cleaned == {
        "id": str(ident),
        "at": "2026-01-01T00:00:00.000000Z",
        "big": "1e+20",
        "nan": "nan",
        "set": [1],
    }


def test_an_unknown_type_is_refused_not_stringified() -> None:
    with pytest.raises(UnserialisableDetail):
        sanitise_details({"thing": object()})
