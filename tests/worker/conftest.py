from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.observability.metrics import Metrics
from agentkeep.worker.driver import Executor, RunDriver


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
