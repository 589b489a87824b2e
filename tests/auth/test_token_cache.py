"""The verified-token cache changes what a check costs, never what it accepts."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from agentkeep.security.tokens import LEEWAY_SECONDS, InvalidToken, TokenCodec

TTL = 60


def codec() -> TokenCodec:
    return TokenCodec(
        secret=secrets.token_urlsafe(48),
        algorithm="HS256",
        issuer="agentkeep-test",
        audience="agentkeep-test",
        access_ttl_seconds=TTL,
    )


def test_a_cached_token_still_expires() -> None:
    tokens = codec()
    # Minted so that it expires (leeway included) about 1.5 s from now.
    minted = datetime.now(UTC) - timedelta(seconds=TTL + LEEWAY_SECONDS) + timedelta(seconds=1.5)
    token, claims = tokens.issue_access(uuid.uuid4(), uuid.uuid4(), now=minted)
    assert tokens.decode_access(token) == claims
    assert tokens.decode_access(token) == claims  # answered from the cache
    time.sleep(2.2)
    with pytest.raises(InvalidToken) as refused:
        tokens.decode_access(token)
    assert refused.value.reason == "ExpiredSignatureError"


def test_a_token_differing_from_a_cached_one_is_verified_in_full() -> None:
    tokens = codec()
    token, _ = tokens.issue_access(uuid.uuid4(), uuid.uuid4())
    tokens.decode_access(token)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for forged in (f"{header}.{payload}.{flipped}", f"{header}.{payload}.", token + "x"):
        with pytest.raises(InvalidToken):
            tokens.decode_access(forged)


def test_a_token_of_another_key_is_refused_even_when_the_same_text_was_cached_elsewhere() -> None:
    issuer, other = codec(), codec()
    token, _ = issuer.issue_access(uuid.uuid4(), uuid.uuid4())
    issuer.decode_access(token)
    with pytest.raises(InvalidToken):
        other.decode_access(token)


def test_an_invalid_token_is_refused_every_time() -> None:
    tokens = codec()
    for _ in range(3):
        with pytest.raises(InvalidToken):
            tokens.decode_access("not-a-token")
