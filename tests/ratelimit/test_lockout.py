"""Account lockout at service level: failures per account, whatever address they come from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from agentkeep.config import Settings
from agentkeep.ratelimit.lockout import LoginThrottle
from tests.ratelimit.conftest import limited_app


@pytest.fixture
async def throttle_app(limit_settings: Callable[..., Settings]) -> AsyncIterator[tuple[LoginThrottle, int]]:
    lockout = 600
    settings = limit_settings(rate_limit_login_failures="5/15 minutes", account_lockout_seconds=lockout)
    async with limited_app(settings) as subject:
        yield LoginThrottle(subject.limiter, lockout), lockout


async def test_account_locks_after_the_nth_failure_even_from_rotating_ips(
    limit_settings: Callable[..., Settings],
) -> None:
    settings = limit_settings(
        rate_limit_auth="2/minute", rate_limit_login_failures="5/15 minutes", account_lockout_seconds=600
    )
    async with limited_app(settings) as subject:
        throttle = LoginThrottle(subject.limiter, settings.account_lockout_seconds)
        locked_now = []
        for n in range(5):
            # Each failure arrives from a new address: the per-IP rule never trips...
            transport = httpx.ASGITransport(app=subject.app, client=(f"198.51.100.{n}", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                assert (await http.post("/_test/login")).status_code == 200
            assert await throttle.is_locked("victim") is None
            locked_now.append(await throttle.register_failure("victim"))
        # ...but the account rule does.
        retry_after = await throttle.is_locked("victim")

    assert locked_now == [False, False, False, False, True]
    assert retry_after is not None
    assert 590 <= retry_after <= 600


async def test_only_the_locking_failure_reports_the_lock(throttle_app: tuple[LoginThrottle, int]) -> None:
    throttle, _ = throttle_app
    results = [await throttle.register_failure("alice") for _ in range(9)]
    assert results.count(True) == 1


async def test_username_variants_count_as_one_account(throttle_app: tuple[LoginThrottle, int]) -> None:
    throttle, _ = throttle_app
    for name in ("Alice", " alice", "ALICE ", "alice", "\uff41lice"):
        await throttle.register_failure(name)
    assert await throttle.is_locked("alice") is not None
    assert await throttle.is_locked("bob") is None


async def test_unknown_and_known_names_lock_alike(throttle_app: tuple[LoginThrottle, int]) -> None:
    # The throttle never asks whether an account exists: nothing to enumerate.
    throttle, _ = throttle_app
    for _ in range(5):
        await throttle.register_failure("no-such-user-7f3a")
    assert await throttle.is_locked("no-such-user-7f3a") is not None


async def test_reset_clears_failures_and_lifts_the_lock(throttle_app: tuple[LoginThrottle, int]) -> None:
    throttle, _ = throttle_app
    for _ in range(4):
        await throttle.register_failure("carol")
    await throttle.reset("carol")
    # Four failures were forgotten: four more do not lock.
    for _ in range(4):
        assert await throttle.register_failure("carol") is False
    assert await throttle.is_locked("carol") is None
    await throttle.register_failure("carol")
    assert await throttle.is_locked("carol") is not None
    await throttle.reset("carol")
    assert await throttle.is_locked("carol") is None


async def test_the_lock_expires_by_itself(limit_settings: Callable[..., Settings]) -> None:
    settings = limit_settings(rate_limit_login_failures="2/2 seconds", account_lockout_seconds=1)
    async with limited_app(settings) as subject:
        throttle = LoginThrottle(subject.limiter, settings.account_lockout_seconds)
        await throttle.register_failure("dave")
        assert await throttle.register_failure("dave") is True
        assert await throttle.is_locked("dave") == 1
        await asyncio.sleep(2.2)
        assert await throttle.is_locked("dave") is None


async def test_the_app_hands_out_a_throttle_configured_from_settings(
    limit_settings: Callable[..., Settings],
) -> None:
    settings = limit_settings(rate_limit_login_failures="3/15 minutes", account_lockout_seconds=120)
    async with limited_app(settings) as subject:
        answers = [(await subject.http.post("/_test/accounts/Erin/failures")).json() for _ in range(3)]

    assert [answer["locked_now"] for answer in answers] == [False, False, True]
    assert answers[-1]["retry_after"] in range(110, 121)
