"""Migrations are the only schema source: head matches the models exactly, and reverses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.db.migrate import current_heads, downgrade, upgrade
from agentkeep.db.models import Base
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_answers,
    unavailable,
)


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    if not await postgres_answers():
        unavailable("PostgreSQL")
    url = await create_postgres_database("agentkeep_migration")
    yield url
    await drop_postgres_database(url)


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_upgrade_matches_models_and_downgrade_reverses(empty_database: str) -> None:
    await asyncio.to_thread(upgrade, empty_database)
    engine = create_async_engine(empty_database, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
            assert set(Base.metadata.tables) <= await connection.run_sync(_tables)
            assert await connection.run_sync(_revision) in current_heads()

        await asyncio.to_thread(downgrade, empty_database, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) <= {"alembic_version"}

        await asyncio.to_thread(upgrade, empty_database)
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


def test_there_is_exactly_one_head() -> None:
    assert len(current_heads()) == 1
