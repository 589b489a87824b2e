"""Pooled PostgreSQL connections are pinged after an idle spell, not on every checkout (a
ping is three round trips); a connection that dies while in steady use fails one query, and
the pool replaces it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.config import Settings
from agentkeep.db import engine as engine_module
from agentkeep.db.engine import create_engine
from tests.support.databases import (
    ADMIN_URL,
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)


@pytest.fixture
async def engine(make_settings: Callable[..., Settings]) -> AsyncIterator[AsyncEngine]:
    if not await postgres_answers():
        unavailable("PostgreSQL")
    url = await create_postgres_database("agentkeep_liveness")
    pooled = create_engine(make_settings(database_url=url, db_pool_size=1, db_max_overflow=0))
    try:
        yield pooled
    finally:
        await pooled.dispose()
        await drop_postgres_database(url)


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def terminate(pid: int) -> None:
    """Kill one server backend (as a failover or an idle timeout would), from outside the pool."""
    admin = create_async_engine(ADMIN_URL, poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    finally:
        await admin.dispose()


async def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.2)
    first = await backend_pid(engine)
    await terminate(first)
    await asyncio.sleep(0.3)
    second = await backend_pid(engine)  # no error: the ping found the dead connection first
    assert second != first


async def test_a_connection_in_steady_use_is_not_pinged_and_heals_after_one_failure(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 60.0)
    first = await backend_pid(engine)
    await terminate(first)
    with pytest.raises(DBAPIError):
        await backend_pid(engine)  # handed out unpinged: the query meets the dead connection
    second = await backend_pid(engine)
    assert second != first
