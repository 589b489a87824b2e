from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.db.migrate import upgrade
from agentkeep.observability.metrics import Metrics
from agentkeep.worker.driver import Executor, RunDriver
from agentkeep.worker.queue_schema import apply_queue_schema
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)


@pytest.fixture
def run_settings(database_url: str, make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings on this test's database, with short leases unless told otherwise."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": database_url, "run_lease_seconds": 2}
        values.update(overrides)
        return make_settings(**values)

    return build


@pytest.fixture
async def sessionmaker(
    database_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(make_settings(database_url=database_url))
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def make_driver(
    sessionmaker: async_sessionmaker[AsyncSession], run_settings: Callable[..., Settings]
) -> Callable[..., RunDriver]:
    def build(owner: str, executor: Executor, metrics: Metrics | None = None, **overrides: Any) -> RunDriver:
        return RunDriver(
            sessionmaker,
            run_settings(**overrides),
            owner=owner,
            executor=executor,
            metrics=metrics,
        )

    return build


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """An empty PostgreSQL database: `agentkeep migrate` prepares it like in production."""
    if not await postgres_answers():
        unavailable("PostgreSQL")
    url = await create_postgres_database("agentkeep_worker")
    yield url
    await drop_postgres_database(url)


@pytest.fixture
async def queue_database(fresh_database: str) -> str:
    """A fresh PostgreSQL database migrated like `agentkeep migrate` does, job queue included."""
    await asyncio.to_thread(upgrade, fresh_database)
    assert (await asyncio.to_thread(apply_queue_schema, fresh_database)).created
    return fresh_database


@pytest.fixture
def queue_settings(queue_database: str, make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return make_settings(**{"database_url": queue_database, "run_lease_seconds": 2, **overrides})

    return build


@pytest.fixture
async def queue_sessionmaker(
    queue_database: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(make_settings(database_url=queue_database))
    yield create_sessionmaker(engine)
    await engine.dispose()
