"""Audit test helpers: a sessionmaker on the test database and one-line event writers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.chain import AppendedRecord
from agentkeep.audit.service import record
from agentkeep.config import Settings
from agentkeep.context import RequestContext
from agentkeep.db.engine import create_engine, create_sessionmaker

CONTEXT = RequestContext(request_id="req-1", ip_address="203.0.113.7", user_agent="pytest-agent/1.0")


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


async def add_events(
    sessionmaker: async_sessionmaker[AsyncSession], count: int, **fields: Any
) -> list[AppendedRecord]:
    """Append `count` events, each in its own committed transaction."""
    appended = []
    extra = fields.pop("details", {})
    for index in range(count):
        async with sessionmaker() as session, session.begin():
            details = {"index": index, **extra}
            appended.append(
                await record(session, AuditAction.AGENT_CREATED, context=CONTEXT, details=details, **fields)
            )
    return appended


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(sql), params)
