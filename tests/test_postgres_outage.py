"""PostgreSQL stopped, restarted and frozen under continuous load: never a 500.

A real `agentkeep serve` on its own throwaway PostgreSQL (and the shared Redis, which nothing
here stops) gets a steady mix of authenticated reads and writes and readiness probes while
the database is shut down immediately, stays down, starts again, or is frozen with SIGSTOP.
Every answer counts: each one is a success, a 503 problem+json with Retry-After, or an
expected client error; never a 500 and never a hung request; and the service recovers by
itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from redis import Redis

from agentkeep.config import Settings
from tests.auth.helpers import bearer, register_and_login
from tests.support.access_log import ACCESS_LOG_ENV, served_requests
from tests.support.databases import REDIS_URL, unavailable
from tests.support.load import Answer, MixedLoad
from tests.support.server import Server, running_server
from tests.support.throwaway import ThrowawayPostgres, running_postgres
from tests.support.timing import SCHEDULING_MARGIN_SECONDS

pytestmark = pytest.mark.slow

# Statuses the load may see: successes, the outage's 503. Nothing else is expected of these
# requests (unique agent names, rate limits far above the load).
ALLOWED_STATUSES = {200, 201, 503}
DOWN_SECONDS = 3.0
# After PostgreSQL accepts connections again: the pool replaces its dead connections on first
# use, so a few seconds; generous for a loaded host.
RECOVERY_SECONDS = 30.0
RECOVERED_IN_A_ROW = 3
WARM_UP_ANSWERS = 10

# The settings that bound a frozen database, set small so the test is short. Defaults are
# DB_COMMAND_TIMEOUT 30, DB_POOL_TIMEOUT 30, DB_CONNECT_TIMEOUT 3, HEALTH_CHECK_TIMEOUT 2.
FROZEN_BOUNDS = {
    "DB_COMMAND_TIMEOUT": "2",
    "DB_POOL_TIMEOUT": "2",
    "DB_CONNECT_TIMEOUT": "2",
    "HEALTH_CHECK_TIMEOUT": "2",
}


def _redis_answers() -> bool:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    if not _redis_answers():
        unavailable("Redis")
    with running_postgres() as server:
        yield server


def _server_env(postgres: ThrowawayPostgres, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": REDIS_URL,
        # The load must meet the database, not the API rate limit.
        "RATE_LIMIT_API": "1000000/minute",
        "RATE_LIMIT_AUTH": "1000/minute",
        **ACCESS_LOG_ENV,
        **extra,
    }


def _worst_request_seconds(env: dict[str, str]) -> float:
    """The longest a request may take against a database that does not answer.

    Each database step of a request is bounded by its own setting: waiting for a pooled
    connection (DB_POOL_TIMEOUT), opening one (DB_CONNECT_TIMEOUT), one command on it
    (DB_COMMAND_TIMEOUT); a request that fails gives up at its first failing step, so at
    most one of each. Readiness is bounded by HEALTH_CHECK_TIMEOUT, which is smaller.
    """
    defaults = Settings.model_fields
    total = 0.0
    for name in ("DB_POOL_TIMEOUT", "DB_CONNECT_TIMEOUT", "DB_COMMAND_TIMEOUT"):
        total += float(env.get(name, defaults[name.lower()].default))
    return total


def _assert_every_answer_acceptable(load: MixedLoad) -> None:
    hung = [answer for answer in load.answers if answer.status is None]
    assert not hung, f"requests without an answer: {hung[:5]} ({load.summary()})"
    unexpected = [a for a in load.answers if a.status not in ALLOWED_STATUSES]
    assert not unexpected, f"unexpected answers: {unexpected[:5]} ({load.summary()})"
    for answer in load.answers:
        if answer.status == 503:
            # Readiness answers its documented report (status "fail"); the API a problem.
            media_type = "application/json" if answer.kind == "ready" else "application/problem+json"
            assert answer.content_type == media_type, answer
            assert answer.retry_after is not None, answer
            assert int(answer.retry_after) > 0, answer
            assert answer.request_id, answer


def _assert_log_clean(server: Server) -> None:
    log = server.log()
    assert "unhandled_error" not in log
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 : log.index("Traceback") + 3000]


def _assert_served_within(server: Server, answers: list[Answer], bound: float) -> float:
    """Every answer was served within `bound` seconds by the server's own clock; the slowest."""
    served = served_requests(server.log())
    slowest = 0.0
    for answer in answers:
        assert answer.request_id in served, answer
        seconds = served[answer.request_id].seconds
        slowest = max(slowest, seconds)
        assert seconds < bound, (answer, seconds, bound)
    return slowest


async def _owner(http: httpx.AsyncClient) -> dict[str, str]:
    tokens = await register_and_login(http, "outage")
    return bearer(tokens["access_token"])


async def _under_load(
    env: dict[str, str],
    fault: Callable[[MixedLoad], Awaitable[None]],
    check: Callable[[Server, MixedLoad], None],
) -> None:
    """Serve with `env`, keep the mixed load going through `fault`, then until recovery.

    Every answer must be acceptable and the server's log clean; the warm-up must succeed
    (later "before" requests may still be in flight when the fault strikes). `check` looks
    at the answers while the server's log is still there.
    """
    with running_server(env) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            load = MixedLoad(http, await _owner(http))

            async def script(load: MixedLoad) -> None:
                await asyncio.sleep(2)
                await fault(load)
                load.phase = "after"
                await load.until_recovered(RECOVERED_IN_A_ROW, RECOVERY_SECONDS)

            await load.run(script)
        print("answers by phase:", load.summary())
        _assert_every_answer_acceptable(load)
        assert all(answer.ok for answer in load.answers[:WARM_UP_ANSWERS]), load.summary()
        _assert_log_clean(server)
        check(server, load)


async def test_postgres_stop_outage_and_restart_under_load_never_answers_500(
    postgres: ThrowawayPostgres,
) -> None:
    async def stop_and_restart(load: MixedLoad) -> None:
        load.phase = "stopping"
        await asyncio.to_thread(postgres.stop)
        load.phase = "down"
        await asyncio.sleep(DOWN_SECONDS)
        load.phase = "starting"
        await asyncio.to_thread(postgres.start)

    def check(server: Server, load: MixedLoad) -> None:
        down = load.in_phase("down")
        assert down, load.summary()
        assert all(answer.status == 503 for answer in down), load.summary()
        # A stopped server refuses connections at once: far below the connect timeout.
        bound = float(Settings.model_fields["db_connect_timeout"].default) + SCHEDULING_MARGIN_SECONDS
        print("slowest 503 while down:", _assert_served_within(server, down, bound))

    await _under_load(_server_env(postgres), stop_and_restart, check)


async def test_frozen_postgres_gives_bounded_503s_then_recovers(postgres: ThrowawayPostgres) -> None:
    env = _server_env(postgres, **FROZEN_BOUNDS)
    bound = _worst_request_seconds(env) + SCHEDULING_MARGIN_SECONDS

    async def freeze_and_thaw(load: MixedLoad) -> None:
        frozen = postgres.freeze()
        try:
            load.phase = "frozen"
            # Long enough that every pooled connection meets the freeze.
            await asyncio.sleep(2 * bound)
        finally:
            load.phase = "thawing"
            postgres.thaw(frozen)

    def check(server: Server, load: MixedLoad) -> None:
        frozen = load.in_phase("frozen")
        assert any(answer.status == 503 for answer in frozen), load.summary()
        print("slowest answer while frozen:", _assert_served_within(server, frozen, bound), "bound", bound)

    await _under_load(env, freeze_and_thaw, check)
