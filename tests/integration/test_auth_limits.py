"""Rate limits and lockout on the real auth routes, audited without flooding."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from tests.auth.helpers import PASSWORD, bearer, login, register, register_and_login, without_request_id
from tests.integration.conftest import Served, audit_rows

Serve = Callable[..., AbstractAsyncContextManager[Served]]


async def test_fixes_report_six_quick_logins_give_401_five_times_then_429(serve: Serve) -> None:
    async with serve() as (app, http):
        statuses = []
        for _ in range(6):
            response = await http.post("/auth/login", data={"username": "test", "password": "test"})
            statuses.append(response.status_code)
        assert statuses == [401] * 5 + [429]
        assert int(response.headers["retry-after"]) > 0
        assert response.headers["content-type"] == "application/problem+json"
        assert "ratelimit-policy" in response.headers
        # A second 429 in the same window is not audited again.
        assert (await http.post("/auth/login", data={"username": "t", "password": "t"})).status_code == 429
        limited = await audit_rows(app, "rate_limited")
    assert len(limited) == 1
    assert limited[0].status == "denied"
    assert limited[0].ip_address == "203.0.113.10"
    assert "203.0.113.10" not in repr(limited[0].details)


async def test_registration_shares_the_per_ip_auth_limit(serve: Serve) -> None:
    async with serve() as (_, http):
        statuses = [(await register(http, f"user{index}")).status_code for index in range(6)]
    assert statuses == [201] * 5 + [429]


async def test_account_locks_after_repeated_failures_from_rotating_addresses(serve: Serve) -> None:
    # The attacker rotates addresses (seen through a trusted proxy), so no per-IP limit trips.
    overrides = {
        "rate_limit_login_failures": "3/15 minutes",
        "account_lockout_seconds": 600,
        "trusted_proxies": ["203.0.113.10"],
    }
    async with serve(**overrides) as (app, http):
        assert (await register(http, "erin")).status_code == 201
        failures = []
        for index in range(3):
            failures.append(
                await http.post(
                    "/auth/login",
                    data={"username": "erin", "password": f"wrong guess {index} xx"},
                    headers={"X-Forwarded-For": f"198.51.100.{index + 1}"},
                )
            )
        locked = await http.post(
            "/auth/login",
            data={"username": "ERIN ", "password": PASSWORD},
            headers={"X-Forwarded-For": "192.0.2.77"},
        )
        locked_rows = await audit_rows(app, "account_locked")
        failed_rows = await audit_rows(app, "login_failed")
    assert [response.status_code for response in failures] == [401, 401, 401]
    # Even the right password is refused now, with exactly the body of any failed login.
    assert locked.status_code == 401
    assert without_request_id(locked.json()) == without_request_id(failures[0].json())
    assert len(locked_rows) == 1
    assert locked_rows[0].details["username"] == "erin"
    assert [row.details["reason"] for row in failed_rows] == ["bad_password"] * 3 + ["locked"]
    assert [row.ip_address for row in failed_rows] == [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "192.0.2.77",
    ]


async def test_a_successful_login_resets_the_failure_count(serve: Serve) -> None:
    async with serve(rate_limit_login_failures="3/15 minutes", rate_limit_auth="100/minute") as (app, http):
        await register(http, "fred")
        await login(http, "fred", "wrong guess 1 xxx")
        await login(http, "fred", "wrong guess 2 xxx")
        assert (await login(http, "fred")).status_code == 200
        await login(http, "fred", "wrong guess 3 xxx")
        await login(http, "fred", "wrong guess 4 xxx")
        assert (await login(http, "fred")).status_code == 200
        assert await audit_rows(app, "account_locked") == []


async def test_authenticated_requests_are_limited_per_user(serve: Serve) -> None:
    async with serve(rate_limit_api="3/minute") as (_, http):
        alice = await register_and_login(http, "alice")
        statuses = [
            (await http.get("/auth/me", headers=bearer(alice["access_token"]))).status_code for _ in range(4)
        ]
        # Another user's budget is separate.
        bob = (await register(http, "bob"), await login(http, "bob"))[1].json()
        other = await http.get("/auth/me", headers=bearer(bob["access_token"]))
    assert statuses == [200, 200, 200, 429]
    assert other.status_code == 200


async def test_login_outcomes_are_counted_in_metrics(serve: Serve) -> None:
    async with serve(client_ip="127.0.0.1") as (_, http):
        await register_and_login(http, "gina")
        await login(http, "gina", "not the password!")
        text = (await http.get("/metrics")).text
    assert 'agentkeep_logins_total{outcome="success"} 1.0' in text
    assert 'agentkeep_logins_total{outcome="bad_password"} 1.0' in text
    assert 'agentkeep_audit_records_total{action="login_success"} 1.0' in text
    assert 'agentkeep_rate_limit_decisions_total{outcome="allowed",rule="auth"} 3.0' in text
