"""SIGTERM: readiness turns 503 `draining`, in-flight requests finish, the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from agentkeep.config import Settings
from agentkeep.serving import Drain, GracefulShutdown
from tests.auth.helpers import PASSWORD
from tests.support.server import Server, running_server

# Logins hash a password (argon2id); one hash at a time makes a queue of real, slow requests.
SLOW_LOGINS = {"PASSWORD_HASH_CONCURRENCY": "1", "RATE_LIMIT_AUTH": "1000/minute"}
IN_FLIGHT = 12


def _register(server: Server, username: str) -> None:
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    response = httpx.post(f"{server.base_url}/auth/register", json=body, timeout=30)
    assert response.status_code == 201, response.text


async def _logins_in_flight(
    http: httpx.AsyncClient, username: str
) -> tuple[list[asyncio.Task[httpx.Response]], int]:
    """Start IN_FLIGHT logins; once the first has answered, return them and how many still run."""
    form = {"username": username, "password": PASSWORD}
    tasks = [asyncio.create_task(http.post("/auth/login", data=form)) for _ in range(IN_FLIGHT)]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    return tasks, sum(not task.done() for task in tasks)


async def _wait_exit(server: Server, seconds: float) -> int:
    return await asyncio.to_thread(server.process.wait, seconds)


async def test_draining_health_answers_503_while_liveness_stays_200(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    from asgi_lifespan import LifespanManager

    from agentkeep.app import create_app

    app = create_app(make_settings(database_url=sqlite_url))
    drain = Drain()
    app.state.drain = drain
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get("/health/ready")).status_code == 200
            assert drain.begin() is True
            assert drain.begin() is False
            for path in ("/health/ready", "/health"):
                response = await http.get(path)
                assert response.status_code == 503
                assert response.json() == {"status": "draining", "checks": {}}
                assert response.headers["cache-control"] == "no-store"
            assert (await http.get("/health/live")).status_code == 200


@pytest.mark.slow
async def test_responses_while_draining_close_their_connection(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    """A proxy's pooled keep-alive connections must be gone before the listener closes:
    during the drain every answer says `Connection: close` (RFC 9112, 9.6)."""
    from asgi_lifespan import LifespanManager

    from agentkeep.app import create_app

    app = create_app(make_settings(database_url=sqlite_url))
    graceful = GracefulShutdown(app, drain_seconds=0)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=graceful)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert "connection" not in (await http.get("/health/live")).headers
            graceful.drain.begin()
            for path in ("/health/live", "/health/ready", "/api/agents"):
                response = await http.get(path)
                assert response.headers.get_list("connection") == ["close"], path


async def test_sigterm_drains_then_finishes_in_flight_requests_and_exits_0() -> None:
    drain_seconds = 2.0
    env = {**SLOW_LOGINS, "SHUTDOWN_DRAIN_SECONDS": str(drain_seconds), "SHUTDOWN_TIMEOUT_SECONDS": "20"}
    with running_server(env) as server:
        _register(server, "draining")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            assert (await http.get("/health/ready")).status_code == 200
            logins, running = await _logins_in_flight(http, "draining")
            assert running > 0, "every login finished before the signal: nothing was in flight"
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)

            # New connections are still accepted during the drain, and told to go elsewhere.
            statuses: list[int] = []
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as probe:
                while time.monotonic() - signalled < drain_seconds / 2:
                    ready = await probe.get("/health/ready", headers={"Connection": "close"})
                    statuses.append(ready.status_code)
                    if ready.status_code == 503:
                        assert ready.json()["status"] == "draining"
                        break
                    await asyncio.sleep(0.05)
                live = await probe.get("/health/live", headers={"Connection": "close"})
            assert statuses[-1] == 503, statuses
            assert live.status_code == 200

            responses = await asyncio.gather(*logins)
        assert [response.status_code for response in responses] == [200] * IN_FLIGHT
        assert all(response.json()["access_token"] for response in responses)
        assert await _wait_exit(server, 30) == 0
        stopped_after = time.monotonic() - signalled
        # The drain period was honoured, and the process did not hang until the timeout.
        assert drain_seconds * 0.9 <= stopped_after < drain_seconds + 15, stopped_after


@pytest.mark.slow
async def test_sigterm_without_drain_finishes_in_flight_requests_and_exits_0() -> None:
    with running_server(SLOW_LOGINS) as server:
        _register(server, "nodrain")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            logins, running = await _logins_in_flight(http, "nodrain")
            assert running > 0
            server.process.send_signal(signal.SIGTERM)
            responses = await asyncio.gather(*logins)
        assert [response.status_code for response in responses] == [200] * IN_FLIGHT
        assert await _wait_exit(server, 30) == 0
        async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as late:
            with pytest.raises(httpx.ConnectError):
                await late.get("/health/live")


@pytest.mark.slow
async def test_second_sigterm_cuts_the_drain_short() -> None:
    with running_server({"SHUTDOWN_DRAIN_SECONDS": "60"}) as server:
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as probe:
            for _ in range(40):
                if (await probe.get("/health/ready")).status_code == 503:
                    break
                await asyncio.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        assert await _wait_exit(server, 30) == 0
        assert time.monotonic() - started < 20


@pytest.mark.slow
async def test_sigterm_drains_every_worker_process_of_serve_workers() -> None:
    probe_seconds = 2.5
    # The drain outlasts the probing by far: a probe connection that a busy host leaves in
    # the listen queue when the drain ends is never accepted, and fails the test as a reset.
    drain_seconds = probe_seconds + 2.5
    with running_server({"SHUTDOWN_DRAIN_SECONDS": str(drain_seconds)}, workers=2) as server:
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)  # the parent forwards it to each worker
        statuses: list[str] = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as probe:
            # Fresh connections land on either worker: every one of them must say draining.
            while time.monotonic() - signalled < probe_seconds:
                ready = await probe.get("/health/ready", headers={"Connection": "close"})
                statuses.append(ready.json()["status"])
                await asyncio.sleep(0.05)
        draining_from = statuses.index("draining")
        assert set(statuses[draining_from:]) == {"draining"}, statuses
        assert len(statuses) - draining_from >= 5, statuses
        assert await _wait_exit(server, 30) == 0
