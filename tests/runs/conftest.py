"""Run API tests: many users log in from one address (lift the auth limit), and a real
uvicorn server on a loopback port for the event stream (httpx's ASGI transport buffers
whole responses, so it cannot show that events arrive live)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from agentkeep.config import Settings
from tests.support.databases import REDIS_URL
from tests.support.throwaway import free_port


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(database_url=database_url, redis_url=redis_url, rate_limit_auth="1000/minute")


@pytest.fixture
async def live_url(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[str]:
    """The same app (its lifespan already started by `client`) served over real HTTP."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.025)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)
