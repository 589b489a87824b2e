"""Concurrent appends never fork the chain or leave gaps."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.models import AuditLog
from agentkeep.audit.service import record
from agentkeep.audit.verify import verify_chain
from agentkeep.users.models import User
from tests.audit.conftest import CONTEXT

REQUESTS = {"postgres": 200, "sqlite": 50}


async def _audited_write(sessionmaker: async_sessionmaker[AsyncSession], index: int) -> int:
    async with sessionmaker() as session, session.begin():
        user = User(id=uuid.uuid4(), username=f"c{index}", email=f"c{index}@example.com", password_hash="x")
        session.add(user)
        appended = await record(
            session, AuditAction.USER_REGISTERED, context=CONTEXT, user_id=user.id, details={"i": index}
        )
        return appended.sequence


async def test_concurrent_audited_writes_form_one_gap_free_chain(
    backend: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    count = REQUESTS[backend]
    sequences = await asyncio.gather(*(_audited_write(sessionmaker, index) for index in range(count)))
    assert sorted(sequences) == list(range(1, count + 1))
    async with sessionmaker() as session:
        rows = list((await session.scalars(select(AuditLog).order_by(AuditLog.sequence))).all())
        assert sorted(row.details["i"] for row in rows) == list(range(count))
        assert all(row.user_id is not None for row in rows)
        assert [row.prev_hash for row in rows[1:]] == [row.hash for row in rows[:-1]]
        result = await verify_chain(session)
    assert result.ok, result.describe()
    assert result.checked == count
