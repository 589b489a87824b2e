"""Pooled PostgreSQL connections are pinged after an idle spell, not on every checkout (a
ping is three round trips); a connection that dies while in steady use fails one query, and
the pool replaces it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import literal_column, select, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.config import Settings
from agentkeep.db import engine as engine_module
from agentkeep.db.engine import create_engine
from agentkeep.db.faults import classify
from agentkeep.db.rows import RowQuery
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


async def test_a_list_read_sent_past_sqlalchemy_on_a_dead_connection_is_an_outage_and_replaced(
    engine: AsyncEngine,
) -> None:
    """The lists' RowQuery sends its statement through asyncpg itself: a connection that died
    under it must read as the outage it is (503, not 500) and leave the pool, as SQLAlchemy
    does for its own statements."""
    query = RowQuery(select(literal_column("1").label("one")))
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    first = await backend_pid(engine)
    await terminate(first)
    async with sessionmaker() as session:
        # asyncpg says only InterfaceError("connection is closed"), with no SQLSTATE.
        with pytest.raises(DisconnectionError) as raised:
            await query.rows(session, {})
    fault = classify(raised.value)
    assert fault is not None
    assert fault.connection_unusable
    async with sessionmaker() as session:
        assert await query.rows(session, {}) == [{"one": 1}]
    assert await backend_pid(engine) != first
