"""Database routes answer 503 problem+json with Retry-After, quickly, when PostgreSQL is gone."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.db.session import SessionDep
from tests.support.throwaway import free_port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener never completes a PostgreSQL handshake (accepts, says nothing)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield int(server.getsockname()[1])


async def _client_for(
    database_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url=database_url, db_connect_timeout=2))

    @app.get("/_test/db")
    async def uses_database(session: SessionDep) -> dict[str, int]:
        return {"one": int((await session.execute(text("SELECT 1"))).scalar_one())}

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.parametrize("kind", ["refused", "silent"])
async def test_database_route_answers_503_with_retry_after(
    kind: str, silent_port: int, make_settings: Callable[..., Settings]
) -> None:
    port = free_port() if kind == "refused" else silent_port
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/agentkeep"
    async for http in _client_for(url, make_settings):
        started = time.monotonic()
        response = await http.get("/_test/db")
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["request_id"]
        assert elapsed < 6, elapsed
        assert (await http.get("/health/live")).status_code == 200
