"""Health probes with the database (and Redis) up, down, and coming back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from agentkeep.app import create_app
from agentkeep.config import Settings
from tests.support.throwaway import ThrowawayPostgres, free_port, running_postgres
from tests.support.timing import SCHEDULING_MARGIN_SECONDS


async def test_health_reports_each_check_ok(client: httpx.AsyncClient, backend: str) -> None:
    for path in ("/health", "/health/ready"):
        response = await client.get(path)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["checks"]["database"]["status"] == "ok"
        if backend == "postgres":
            assert body["checks"]["redis"]["status"] == "ok"
        else:
            assert "redis" not in body["checks"]
        assert response.headers["cache-control"] == "no-store"


async def test_live_touches_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
async def unreachable_client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    closed = free_port()
    settings = make_settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{closed}/agentkeep",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        health_check_timeout=1.0,
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_server_starts_with_database_and_redis_down(unreachable_client: httpx.AsyncClient) -> None:
    live = await unreachable_client.get("/health/live")
    assert live.status_code == 200


async def test_health_answers_503_quickly_when_dependencies_are_down(
    unreachable_client: httpx.AsyncClient,
) -> None:
    for path in ("/health", "/health/ready"):
        started = time.monotonic()
        response = await unreachable_client.get(path)
        # Each check is bounded by HEALTH_CHECK_TIMEOUT (1 s here), the checks run together.
        assert time.monotonic() - started < 1.0 + SCHEDULING_MARGIN_SECONDS
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "fail"
        assert body["checks"]["database"]["status"] == "fail"
        # Redis has fallbacks: its own check only degrades; the database fails the probe.
        assert body["checks"]["redis"]["status"] == "degraded"
        assert "password" not in response.text


async def test_health_is_degraded_not_failed_when_only_redis_is_down(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = make_settings(
        database_url=sqlite_url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        # The closed Redis port refuses at once; the database check must pass on a busy host.
        health_check_timeout=5.0,
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for path in ("/health", "/health/ready"):
                response = await http.get(path)
                assert response.status_code == 200
                body = response.json()
                assert body["status"] == "degraded"
                assert body["checks"]["database"]["status"] == "ok"
                assert body["checks"]["redis"]["status"] == "degraded"
                assert body["checks"]["redis"]["error"]


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    with running_postgres() as server:
        yield server


@pytest.mark.slow
async def test_health_recovers_by_itself_when_postgres_comes_back(
    throwaway_postgres: ThrowawayPostgres, make_settings: Callable[..., Settings]
) -> None:
    # Long enough for a passing check on a busy host.
    settings = make_settings(database_url=throwaway_postgres.url, health_check_timeout=3.0)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get("/health")).status_code == 200

            throwaway_postgres.stop()
            started = time.monotonic()
            down = await http.get("/health/ready")
            assert down.status_code == 503
            assert time.monotonic() - started < settings.health_check_timeout + SCHEDULING_MARGIN_SECONDS
            assert (await http.get("/health/live")).status_code == 200

            throwaway_postgres.start()
            statuses = []
            for _ in range(20):
                response = await http.get("/health")
                statuses.append(response.status_code)
                if response.status_code == 200:
                    break
            assert statuses[-1] == 200, statuses
