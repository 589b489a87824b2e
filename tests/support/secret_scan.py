"""A suite-wide scan: no secret may reach an audit record or a log line, in any test.

Every test's captured output (stdout, stderr, log records) and every audit record left in
the test databases is searched for token-shaped values and the suite's known passwords.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# Issued secrets have recognisable shapes: JWTs, refresh tokens, API keys, and the model
# provider keys the tests store (OpenAI's `sk-...` shape).
SECRET_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bakr_[A-Za-z0-9_-]{20,}"),
    re.compile(r"\bak_[A-Za-z0-9]{24,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
)


def known_passwords() -> tuple[str, ...]:
    from tests.auth.helpers import PASSWORD

    return (PASSWORD, "a brand new passphrase 9")


def find_secrets(chunks: Iterable[str]) -> list[str]:
    passwords = known_passwords()
    found: list[str] = []
    for chunk in chunks:
        for pattern in SECRET_PATTERNS:
            found.extend(match.group(0)[:24] + "..." for match in pattern.finditer(chunk))
        found.extend(f"password {password[:6]}..." for password in passwords if password in chunk)
    return found


async def audit_text(url: str) -> list[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT * FROM audit_logs"))).all()
    finally:
        await engine.dispose()
    return [repr(tuple(row)) for row in rows]
