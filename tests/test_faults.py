"""Fault scenarios against real processes: PostgreSQL or Redis stopped under a running server.

Each test starts its own PostgreSQL or Redis (never the shared ones), runs `agentkeep serve`
against it, stops the service, checks the documented behaviour, starts it again and checks
that the server recovers by itself.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from agentkeep.config import Settings
from tests.auth.helpers import PASSWORD
from tests.support import throwaway
from tests.support.access_log import ACCESS_LOG_ENV, Served, served_request
from tests.support.server import Server, running_server
from tests.support.throwaway import ThrowawayPostgres, ThrowawayRedis, running_postgres, running_redis
from tests.support.timing import SCHEDULING_MARGIN_SECONDS

pytestmark = pytest.mark.slow

# docs/OPERATIONS.md: "within about DB_CONNECT_TIMEOUT seconds" (a silent server; a stopped
# one refuses at once). Checked on the server's own measured duration.
DATABASE_FAULT_BOUND_SECONDS = Settings.model_fields["db_connect_timeout"].default + SCHEDULING_MARGIN_SECONDS
RECOVERY_POLLS = 60
POLL_PAUSE_SECONDS = 0.25


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    with running_postgres() as server:
        yield server


def _register_and_login(http: httpx.Client, username: str) -> str:
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    assert http.post("/auth/register", json=body).status_code == 201
    return _login(http, username)


def _login(http: httpx.Client, username: str) -> str:
    response = http.post("/auth/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _served(server: Server, response: httpx.Response) -> Served:
    return served_request(server.log, response.headers["x-request-id"])


def _assert_database_unavailable(response: httpx.Response, served: Served) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == 503
    assert body["request_id"]
    assert "asyncpg" not in response.text
    assert "Traceback" not in response.text
    assert served.status == 503
    assert served.seconds < DATABASE_FAULT_BOUND_SECONDS, served


def _poll_until(check: Callable[[], bool], what: str) -> int:
    for attempt in range(RECOVERY_POLLS):
        if check():
            return attempt
        time.sleep(POLL_PAUSE_SECONDS)
    pytest.fail(f"{what} did not happen within {RECOVERY_POLLS * POLL_PAUSE_SECONDS:g}s")


def test_postgres_stopped_answers_503_quickly_and_recovers_by_itself(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    with (
        running_server({"DATABASE_URL": throwaway_postgres.url, **ACCESS_LOG_ENV}, migrate=True) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        token = _register_and_login(http, "pgfault")
        auth = {"Authorization": f"Bearer {token}"}
        assert http.get("/auth/me", headers=auth).status_code == 200

        throwaway_postgres.stop()

        me = http.get("/auth/me", headers=auth)
        _assert_database_unavailable(me, _served(server, me))
        login = http.post("/auth/login", data={"username": "pgfault", "password": PASSWORD})
        _assert_database_unavailable(login, _served(server, login))
        ready = http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["status"] == "fail"
        assert http.get("/health").status_code == 503
        assert http.get("/health/live").status_code == 200

        throwaway_postgres.start()

        _poll_until(lambda: http.get("/auth/me", headers=auth).status_code == 200, "recovery of /auth/me")
        assert http.get("/health/ready").status_code == 200
        assert _login(http, "pgfault")


def _redis_env(redis: ThrowawayRedis, auth_limit: int) -> dict[str, str]:
    return {
        "REDIS_URL": redis.url,
        "RATE_LIMIT_AUTH": f"{auth_limit}/minute",
        "RATE_LIMIT_REDIS_RETRY_SECONDS": "1",
        # RATE_LIMIT_REDIS_TIMEOUT keeps its default: a slow answer on a busy host is no outage
        # (docs/ratelimit.md), and a stopped Redis refuses at once.
        # A stopped Redis refuses at once; the database check must pass on a busy host.
        "HEALTH_CHECK_TIMEOUT": "5",
    }


def _me_timings(server: Server, http: httpx.Client, auth: dict[str, str], count: int = 3) -> list[float]:
    """How long the server itself took to answer /auth/me, `count` times."""
    responses = [http.get("/auth/me", headers=auth) for _ in range(count)]
    assert [response.status_code for response in responses] == [200] * count
    return [_served(server, response).seconds for response in responses]


def test_redis_stopped_degrades_health_keeps_login_working_then_recovers(
    throwaway_redis: ThrowawayRedis,
) -> None:
    env = {**_redis_env(throwaway_redis, auth_limit=100), **ACCESS_LOG_ENV}
    with running_server(env) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        token = _register_and_login(http, "redisfault")
        auth = {"Authorization": f"Bearer {token}"}
        assert http.get("/health").json()["status"] == "ok"
        healthy = _me_timings(server, http, auth)
        healthy_login = http.post("/auth/login", data={"username": "redisfault", "password": PASSWORD})
        assert healthy_login.status_code == 200

        throwaway_redis.stop()

        # Revocation is checked against the database: authenticated requests still answer.
        degraded = _me_timings(server, http, auth)
        # Each Redis call is bounded and a refused connection fails at once: the outage adds
        # little (server-measured, with a margin for a loaded host).
        assert max(degraded) < max(healthy) + SCHEDULING_MARGIN_SECONDS, (healthy, degraded)
        health = http.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["redis"]["status"] == "degraded"
        assert health.json()["checks"]["database"]["status"] == "ok"
        assert http.get("/health/ready").status_code == 200
        login = http.post("/auth/login", data={"username": "redisfault", "password": PASSWORD})
        assert login.status_code == 200
        limit_bound = Settings.model_fields["rate_limit_redis_timeout"].default + SCHEDULING_MARGIN_SECONDS
        assert _served(server, login).seconds < _served(server, healthy_login).seconds + limit_bound

        throwaway_redis.start()

        def back_to_ok() -> bool:
            # Any rate-limited request lets a degraded limiter probe Redis again.
            http.get("/auth/me", headers=auth)
            return bool(http.get("/health").json()["status"] == "ok")

        _poll_until(back_to_ok, "health back to ok")


@pytest.mark.slow
def test_redis_stopped_auth_rate_limit_still_limits_from_memory(throwaway_redis: ThrowawayRedis) -> None:
    limit = 4
    with (
        running_server(_redis_env(throwaway_redis, auth_limit=limit)) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        _register_and_login(http, "redislimit")

        throwaway_redis.stop()

        form = {"username": "redislimit", "password": PASSWORD}
        statuses = [http.post("/auth/login", data=form).status_code for _ in range(limit + 1)]
        # The in-process fallback starts counting afresh: `limit` logins pass, the next is refused.
        assert statuses == [200] * limit + [429], statuses
        assert http.get("/health").json()["status"] == "degraded"


def test_missing_server_binaries_fail_when_services_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throwaway, "_find", lambda _binary: None)
    monkeypatch.setattr(shutil, "which", lambda _binary: None)
    monkeypatch.setenv("AGENTKEEP_TEST_REQUIRE_SERVICES", "1")
    for start in (running_postgres, running_redis):
        with pytest.raises(pytest.fail.Exception, match="AGENTKEEP_TEST_REQUIRE_SERVICES"), start():
            pass
    monkeypatch.delenv("AGENTKEEP_TEST_REQUIRE_SERVICES")
    for start in (running_postgres, running_redis):
        with pytest.raises(pytest.skip.Exception), start():
            pass
