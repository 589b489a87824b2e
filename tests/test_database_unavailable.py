"""Database routes answer 503 problem+json with Retry-After, quickly, when PostgreSQL is gone."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.db.session import SessionDep
from tests.support.throwaway import free_port
from tests.support.timing import SCHEDULING_MARGIN_SECONDS


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener never completes a PostgreSQL handshake (accepts, says nothing)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield int(server.getsockname()[1])


# The bound is the configured connect timeout plus the scheduling margin, checked on the
# duration the app measured itself (its request-duration histogram).
CONNECT_TIMEOUT_SECONDS = 2.0


def _served_seconds(app: FastAPI, route: str) -> float:
    value = app.state.metrics.registry.get_sample_value(
        "agentkeep_http_request_duration_seconds_sum", {"route": route, "method": "GET"}
    )
    assert value is not None, f"no request to {route} was measured"
    return float(value)


async def _client_for(
    database_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(make_settings(database_url=database_url, db_connect_timeout=CONNECT_TIMEOUT_SECONDS))

    @app.get("/_test/db")
    async def uses_database(session: SessionDep) -> dict[str, int]:
        return {"one": int((await session.execute(text("SELECT 1"))).scalar_one())}

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


@pytest.mark.parametrize("kind", ["refused", "silent"])
async def test_database_route_answers_503_with_retry_after(
    kind: str, silent_port: int, make_settings: Callable[..., Settings]
) -> None:
    port = free_port() if kind == "refused" else silent_port
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/agentkeep"
    async for app, http in _client_for(url, make_settings):
        response = await http.get("/_test/db")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["request_id"]
        served = _served_seconds(app, "/_test/db")
        assert served < CONNECT_TIMEOUT_SECONDS + SCHEDULING_MARGIN_SECONDS, served
        assert (await http.get("/health/live")).status_code == 200


async def test_a_database_bug_is_a_500_and_an_outage_in_a_task_group_a_503(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> None:
    app = create_app(make_settings(database_url=sqlite_url))

    @app.get("/_test/bug")
    async def undefined_table(session: SessionDep) -> None:
        await session.execute(text("SELECT * FROM no_such_table"))

    @app.get("/_test/grouped")
    async def outage_in_a_group() -> None:
        # What an anyio task group raises when one of its tasks lost its connection.
        raise ExceptionGroup("tasks", [ConnectionResetError(104, "Connection reset by peer")])

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            bug = await http.get("/_test/bug")
            assert bug.status_code == 500
            assert bug.headers["content-type"] == "application/problem+json"
            assert "no_such_table" not in bug.text
            assert "retry-after" not in bug.headers
            grouped = await http.get("/_test/grouped")
            assert grouped.status_code == 503
            assert grouped.headers["content-type"] == "application/problem+json"
            assert int(grouped.headers["retry-after"]) > 0
            assert grouped.json()["request_id"]
