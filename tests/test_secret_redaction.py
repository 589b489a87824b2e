"""Every secret format the product issues is redacted by value, in audit records and log lines.

The formats are written here from the documentation (docs/auth.md: refresh tokens and JWT
access tokens; docs/orgs.md: API keys; docs/providers.md and OpenAI's key shapes: provider
keys), and the values are made with the standard library and PyJWT, not with the product.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import string
from collections.abc import Callable, Iterator

import jwt
import pytest
import structlog

from agentkeep.audit.redaction import clean_text, sanitise_details
from agentkeep.observability.logging import configure_logging
from tests.support.scan_plugin import restore_test_logging

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def _base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def _access_token() -> str:
    claims = {"sub": "5f0c", "iss": "agentkeep", "aud": "agentkeep", "exp": 2_000_000_000, "jti": "j1"}
    return jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")


# (what, a fresh value): the formats the product issues or stores.
FORMATS: list[tuple[str, Callable[[], str]]] = [
    ("refresh token: akr_ + token_urlsafe(32)", lambda: "akr_" + secrets.token_urlsafe(32)),
    ("API key: ak_ + 43 base62 + 6 base62 checksum", lambda: "ak_" + _base62(43) + _base62(6)),
    ("access token: HS256 JWT", _access_token),
    ("OpenAI provider key: sk- + 48", lambda: "sk-" + _base62(48)),
    ("OpenAI project key: sk-proj- + 64", lambda: "sk-proj-" + secrets.token_urlsafe(48)),
]
CONTEXTS = [
    "{}",
    "pasted {} into the name field",
    "token={}&next=/",
    '{{"refresh_token": "{}"}}',
    "https://example.com/callback?code={}",
    "line one\n{}\nline three",
    "Authorization: Bearer {}",
]
IDS = [what.split(":")[0] for what, _ in FORMATS]


@pytest.fixture
def log_buffer(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """A buffer for a test that configures logging itself; the suite's logging is put back."""
    root = logging.getLogger()
    saved_level = root.level
    yield io.StringIO()
    restore_test_logging(request.config)
    root.setLevel(saved_level)


@pytest.mark.parametrize(("what", "make"), FORMATS, ids=IDS)
def test_audit_text_redacts_every_issued_format_in_any_context(what: str, make: Callable[[], str]) -> None:
    secret = make()
    for context in CONTEXTS:
        cleaned = clean_text(context.format(secret))
        assert secret not in cleaned, (what, context)
        assert secret[-12:] not in cleaned, (what, context)
        assert "[REDACTED]" in cleaned
    details = sanitise_details({"note": f"sent {secret}", "items": [secret]})
    assert secret not in json.dumps(details)


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize(("what", "make"), FORMATS, ids=IDS)
def test_log_lines_redact_every_issued_format_wherever_it_appears(
    what: str, make: Callable[[], str], fmt: str, log_buffer: io.StringIO
) -> None:
    secret = make()
    configure_logging("INFO", fmt, log_buffer)
    log = structlog.get_logger("agentkeep.test")
    log.info(f"message naming {secret}", field=secret, nested={"inner": [f"x {secret}"]})
    logging.getLogger("some.library").warning("library said %s", secret)
    try:
        raise ValueError(f"refused {secret}")
    except ValueError:
        log.exception("failed")
    written = log_buffer.getvalue()
    assert written.count("[REDACTED]") >= 5, written
    assert secret not in written, what
    assert secret[-12:] not in written, what


def test_ordinary_values_are_left_as_they_are(log_buffer: io.StringIO) -> None:
    configure_logging("INFO", "json", log_buffer)
    structlog.get_logger("agentkeep.test").info(
        "request", route="/api/agents/{agent_id}", status=200, key_prefix="ak_1234", user="skipper"
    )
    event = json.loads(log_buffer.getvalue().splitlines()[0])
    assert event["route"] == "/api/agents/{agent_id}"
    assert event["status"] == 200
    assert event["key_prefix"] == "ak_1234"
    assert event["user"] == "skipper"
