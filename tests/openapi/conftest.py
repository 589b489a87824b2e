"""A live `agentkeep serve` on SQLite, an organization owner logged in through the API, and
the string formats the document names that a generator cannot guess on its own (README: "The
OpenAPI document is the contract")."""

from __future__ import annotations

import base64
import json
import secrets
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st

from tests.support.server import running_server

# Generous limits, set through the documented variables: the fuzzer should mostly meet real
# behaviour, not 429s (which stay documented and accepted where they happen).
LIVE_ENV = {
    "DOCS_ENABLED": "true",
    "ALLOW_REGISTRATION": "true",
    "RATE_LIMIT_AUTH": "100000/minute",
    "RATE_LIMIT_LOGIN_FAILURES": "100000/minute",
    "RATE_LIMIT_API": "100000/minute",
    "RATE_LIMIT_RUNS": "100000/minute",
    "PASSWORD_HASH_CONCURRENCY": "2",
}


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    username: str
    password: str
    access_token: str


def register_and_login(base_url: str, username: str, password: str) -> str:
    """Create an account (and with it its personal organization, owned) and log in: the token."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        created = http.post(
            "/auth/register",
            json={"username": username, "email": f"{username}@example.com", "password": password},
        )
        assert created.status_code == 201, created.text
        return login(http, username, password)


def login(http: httpx.Client, username: str, password: str) -> str:
    answer = http.post("/auth/login", data={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert isinstance(token, str)
    return token


@pytest.fixture(scope="module")
def live_api() -> Iterator[LiveApi]:
    username = f"owner{secrets.token_hex(4)}"
    password = f"fuzz-{secrets.token_urlsafe(18)}"
    with running_server(LIVE_ENV) as server:
        yield LiveApi(
            server.base_url, username, password, register_and_login(server.base_url, username, password)
        )


# A password the documented policy accepts (docs/auth.md): 12 to 256 characters, not a
# common one, not a short unit repeated, not the username or email. Random words over a
# wide alphabet cannot be on the list, and the fixed prefix breaks any repetition.
_PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-_.!~ "
passwords = st.text(_PASSWORD_ALPHABET, min_size=12, max_size=60).map(lambda tail: f"Pw9-{tail}")

# Any IPv4 or IPv6 address or network, as written by ipaddress users everywhere.
cidrs = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.builds(lambda net, prefix: f"{net}/{prefix}", st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda net, prefix: f"{net}/{prefix}", st.ip_addresses(v=6), st.integers(0, 128)),
)


def _cursor(moment: datetime, after: uuid.UUID) -> str:
    # The shape the API issues (base64url JSON of the last row's time and id): the fuzzer needs
    # positions the server could have returned; what the server answers to them is checked.
    raw = json.dumps({"id": str(after), "t": moment.isoformat()}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# A cursor as the API returns it: a position (time, id) to resume after.
cursors = st.builds(
    _cursor,
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.uuids(),
)


def _version_cursor(before: int) -> str:
    # The shape the versions list issues: base64url JSON of the version to continue below.
    raw = json.dumps({"v": before}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# A versions cursor: a version below which more remain, so 2 up to the largest 32-bit one.
version_cursors = st.integers(min_value=2, max_value=2**31 - 1).map(_version_cursor)


def _message_cursor(after: int) -> str:
    # The shape the messages list issues: base64url JSON of the last message number served.
    raw = json.dumps({"s": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# A messages cursor: a message number (from 1) after which more remain, up to the largest
# 32-bit one.
message_cursors = st.integers(min_value=1, max_value=2**31 - 1).map(_message_cursor)

# One line of printable text (docs/agents.md): any character outside Unicode's Other (C*) and
# Separator (Z*) categories, or the ASCII space; surrounding spaces are trimmed, so not blank.
_PRINTABLE = st.characters(
    exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"), include_characters=" "
)
printable_lines = st.text(_PRINTABLE, min_size=1, max_size=100).filter(lambda text: text.strip(" ") != "")

schemathesis.openapi.format("password", passwords)
schemathesis.openapi.format("cidr", cidrs)
schemathesis.openapi.format("cursor", cursors)
schemathesis.openapi.format("version-cursor", version_cursors)
schemathesis.openapi.format("message-cursor", message_cursors)
schemathesis.openapi.format("printable-line", printable_lines)
