"""Audit test helpers: a sessionmaker on the test database, event writers, waiting for the sealer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.chain import RecordedEvent
from agentkeep.audit.models import AuditLog
from agentkeep.audit.sealing import seal_pending
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
    sessionmaker: async_sessionmaker[AsyncSession], count: int, *, seal: bool = True, **fields: Any
) -> list[RecordedEvent]:
    """Record `count` events, each in its own committed transaction, then seal them."""
    appended = []
    extra = fields.pop("details", {})
    for index in range(count):
        async with sessionmaker() as session, session.begin():
            details = {"index": index, **extra}
            appended.append(
                await record(session, AuditAction.AGENT_CREATED, context=CONTEXT, details=details, **fields)
            )
    if seal:
        await seal_pending(sessionmaker)
    return appended


async def unsealed(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.sequence.is_(None))
        )
        return int(count or 0)


async def wait_until_sealed(sessionmaker: async_sessionmaker[AsyncSession], seconds: float = 20.0) -> None:
    """Poll until a running sealer (the app's) has sealed every record; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := await unsealed(sessionmaker)) > 0:
        assert time.monotonic() < deadline, f"{left} audit records still unsealed after {seconds} s"
        await asyncio.sleep(0.02)


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(sql), params)
