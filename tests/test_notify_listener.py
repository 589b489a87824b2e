"""The notification listener survives losing its connection (PostgreSQL): killed with
pg_terminate_backend, it reconnects, every waiter re-reads, and streams and cancellation
keep working (docs/ARCHITECTURE.md, "Push, not poll")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from agentkeep.config import Settings
from agentkeep.db.engine import libpq_url
from agentkeep.notify.listener import APPLICATION_NAME
from tests.agents.helpers import create_agent, owner
from tests.support.databases import REDIS_URL
from tests.support.timing import eventually
from tests.threads.helpers import finished


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The listener exists on PostgreSQL only (SQLite delivers in-process): this file runs there."""
    return str(request.param)


@pytest.fixture
def settings(database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        rate_limit_auth="1000/minute",
        run_execution="inprocess",
    )


def _terminate_listener(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchall()
    return len(rows)


async def test_a_killed_listener_reconnects_and_streams_and_cancels_still_work(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    hub = app.state.hub

    async def listening() -> bool:
        return bool(hub.listening)

    assert await eventually(listening, within=5.0)
    headers = await owner(client)
    agent = await create_agent(client, headers, tools=[{"name": "calculator"}])

    woken: list[int] = []
    with hub.subscribe("probe") as waiter:
        assert await asyncio.to_thread(_terminate_listener, settings.database_url) == 1

        # Losing the connection wakes every waiter (so it re-reads) and turns on the safety poll.
        woken.append(int(await waiter.wait(5.0)))
        assert await eventually(listening, within=5.0)  # reconnected
    assert woken == [1]

    # After the reconnection, a run's events still stream to the end and a cancel still lands.
    runs = f"/api/agents/{agent['id']}/runs"
    run = (await client.post(runs, json={"input": "what is 6 * 7"}, headers=headers)).json()
    statuses: list[Any] = []
    async with client.stream("GET", f"/api/runs/{run['id']}/events", headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:") and '"status"' in line:
                statuses.append(line)
    assert any('"completed"' in line for line in statuses), statuses
    assert (await finished(client, headers, run["id"]))["output"] == "calculator: 42"

    looping = (await client.post(runs, json={"input": "#loop 1 + 1"}, headers=headers)).json()
    assert await asyncio.to_thread(_terminate_listener, settings.database_url) == 1
    cancelled = await client.post(f"/api/runs/{looping['id']}/cancel", headers=headers)
    assert cancelled.status_code in (202, 409), cancelled.text
    done = await finished(client, headers, looping["id"])
    assert done["status"] in ("cancelled", "failed")  # cancelled, or its step limit came first
