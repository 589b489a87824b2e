"""Limits through real HTTP on test routes: 429 shape, headers, keys, events, exact counts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from agentkeep.config import Settings
from tests.ratelimit.conftest import limited_app
from tests.support.databases import REDIS_URL, unavailable


async def test_sixth_attempt_in_a_minute_gets_problem_json_429_with_retry_after(
    limit_settings: Callable[..., Settings],
) -> None:
    async with limited_app(limit_settings(rate_limit_auth="5/minute")) as subject:
        statuses = [(await subject.http.post("/_test/login")).status_code for _ in range(5)]
        refused = await subject.http.post("/_test/login")

    assert statuses == [200] * 5
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["status"] == 429
    assert body["type"] == "urn:agentkeep:problem:rate-limited"
    assert body["request_id"]
    retry_after = int(refused.headers["retry-after"])
    # The window is a minute and the first attempt was just now: nearly all of it remains.
    assert 55 <= retry_after <= 60
    assert body["retry_after"] == retry_after
    assert refused.headers["ratelimit-policy"] == '"auth";q=5;w=60'
    assert refused.headers["ratelimit"] == f'"auth";r=0;t={retry_after}'


async def test_allowed_responses_count_down_in_ratelimit_header(
    limit_settings: Callable[..., Settings],
) -> None:
    async with limited_app(limit_settings(rate_limit_auth="3/minute")) as subject:
        responses = [await subject.http.post("/_test/login") for _ in range(3)]

    assert [r.headers["ratelimit-policy"] for r in responses] == ['"auth";q=3;w=60'] * 3
    remaining = [r.headers["ratelimit"].split(";")[1] for r in responses]
    assert remaining == ["r=2", "r=1", "r=0"]
    assert "retry-after" not in responses[0].headers


async def test_retry_after_is_never_earlier_than_the_window_allows(
    limit_settings: Callable[..., Settings],
) -> None:
    async with limited_app(limit_settings(rate_limit_auth="2/2 seconds")) as subject:
        for _ in range(2):
            assert (await subject.http.post("/_test/login")).status_code == 200
        refused = await subject.http.post("/_test/login")
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        assert wait in (1, 2)
        # Obeying Retry-After is enough: the next attempt is accepted.
        await asyncio.sleep(wait)
        assert (await subject.http.post("/_test/login")).status_code == 200


async def test_several_rules_on_one_route_are_all_listed(limit_settings: Callable[..., Settings]) -> None:
    settings = limit_settings(rate_limit_api="100/minute", rate_limit_runs="2/minute")
    user = uuid.uuid4()
    async with limited_app(settings) as subject:
        first = await subject.http.post(f"/_test/users/{user}/runs")
        await subject.http.post(f"/_test/users/{user}/runs")
        refused = await subject.http.post(f"/_test/users/{user}/runs")

    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == '"api";q=100;w=60, "runs";q=2;w=60'
    # The hot path skips the second Redis call: no remaining count unless asked for.
    assert "ratelimit" not in first.headers
    assert refused.status_code == 429
    assert refused.headers["ratelimit-policy"] == '"runs";q=2;w=60'
    assert refused.headers["ratelimit"].startswith('"runs";r=0;t=')
    assert int(refused.headers["retry-after"]) >= 1


async def test_principal_limits_are_per_principal(limit_settings: Callable[..., Settings]) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with limited_app(limit_settings(rate_limit_api="2/minute")) as subject:
        alice_statuses = [
            (await subject.http.get(f"/_test/users/{alice}/things")).status_code for _ in range(3)
        ]
        bob_status = (await subject.http.get(f"/_test/users/{bob}/things")).status_code

    assert alice_statuses == [200, 200, 429]
    assert bob_status == 200


async def test_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(
    limit_settings: Callable[..., Settings],
) -> None:
    async with limited_app(limit_settings(rate_limit_auth="3/minute")) as subject:
        statuses = [
            (
                await subject.http.post("/_test/login", headers={"X-Forwarded-For": f"198.51.100.{n}"})
            ).status_code
            for n in range(6)
        ]

    # One peer, whatever it claims: three attempts, then refused.
    assert statuses == [200, 200, 200, 429, 429, 429]


async def test_forwarded_for_is_honoured_from_a_trusted_proxy(
    limit_settings: Callable[..., Settings],
) -> None:
    settings = limit_settings(rate_limit_auth="2/minute", trusted_proxies=["10.0.0.0/8"])
    async with limited_app(settings, client=("10.0.0.5", 40000)) as subject:

        async def attempt(client_ip: str) -> int:
            # A client can prepend anything; the proxy appends the address it saw.
            forwarded = f"1.2.3.4, {client_ip}"
            return (
                await subject.http.post("/_test/login", headers={"X-Forwarded-For": forwarded})
            ).status_code

        first = [await attempt("198.51.100.1") for _ in range(3)]
        second = [await attempt("198.51.100.2") for _ in range(2)]

    assert first == [200, 200, 429]
    assert second == [200, 200]


async def test_one_rate_limited_event_per_key_and_window(limit_settings: Callable[..., Settings]) -> None:
    async with limited_app(limit_settings(rate_limit_auth="1/minute")) as subject:
        statuses = [(await subject.http.post("/_test/login")).status_code for _ in range(20)]
        events = list(subject.events)

    assert statuses.count(429) == 19
    assert len(events) == 1
    (event,) = events
    assert event.rule == "auth"
    assert event.ip_address == "203.0.113.7"
    assert event.path == "/_test/login"
    assert "203.0.113.7" not in event.identity


async def test_a_failing_event_listener_does_not_turn_429_into_500(
    limit_settings: Callable[..., Settings],
) -> None:
    async with limited_app(limit_settings(rate_limit_auth="1/minute")) as subject:

        async def broken(_: object) -> None:
            raise RuntimeError("audit down")

        subject.limiter.add_listener(broken)
        await subject.http.post("/_test/login")
        assert (await subject.http.post("/_test/login")).status_code == 429


async def test_200_concurrent_requests_against_50_allow_exactly_50(
    limit_settings: Callable[..., Settings],
) -> None:
    # With the default Redis timeouts: a burst queues past the 100 ms timeout, and the probe
    # that then finds Redis alive keeps every call on the shared store.
    # The whole burst is admitted at once: the limiter is under test, not MAX_REQUESTS_IN_FLIGHT.
    settings = limit_settings(rate_limit_auth="50/minute", max_requests_in_flight=200)
    async with limited_app(settings) as subject:
        responses = await asyncio.gather(*(subject.http.post("/_test/login") for _ in range(200)))
        degraded = subject.limiter.degraded
        outages = subject.limiter.storage.outages

    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150
    # Exact only if every decision came from the one shared store.
    assert (degraded, outages) == (False, 0)


@pytest.mark.parametrize("kind", ["ip", "principal"])
async def test_redis_keys_hold_no_address_or_user_id(
    make_settings: Callable[..., Settings], sqlite_url: str, redis_available: bool, kind: str
) -> None:
    if not redis_available:
        unavailable("Redis")
    settings = make_settings(database_url=sqlite_url, redis_url=REDIS_URL)
    user = uuid.uuid4()
    async with limited_app(settings) as subject:
        if kind == "ip":
            await subject.http.post("/_test/login")
        else:
            await subject.http.get(f"/_test/users/{user}/things")
    client = Redis.from_url(REDIS_URL)
    try:
        found = [k for k in await client.keys(f"{settings.redis_key_prefix}:*") if b"warm-up" not in k]
        keys = [key.decode() if isinstance(key, bytes) else key for key in found]
    finally:
        await client.aclose()
    assert keys
    assert all(key.startswith(f"{settings.redis_key_prefix}:ratelimit:") for key in keys)
    assert not any("203.0.113.7" in key or str(user) in key for key in keys)
