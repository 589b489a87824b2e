"""The sealer: chains committed records after the fact, stops cleanly, and what verify says
about records it has not sealed yet. Tampering with freshly sealed records is caught."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.models import AuditLog
from agentkeep.audit.sealing import AuditSealer, seal_pending
from agentkeep.audit.verify import verify_chain
from tests.audit.conftest import add_events, execute, unsealed, wait_until_sealed


async def test_verify_counts_fresh_unsealed_records_and_fails_on_stale_ones(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 2)
    await add_events(sessionmaker, 3, seal=False)
    async with sessionmaker() as session:
        fresh = await verify_chain(session)
        stale = await verify_chain(session, max_unsealed_age=timedelta(0))
    assert (fresh.ok, fresh.checked, fresh.pending) == (True, 2, 3)
    assert "3 not sealed yet" in fresh.describe()
    assert (stale.ok, stale.first_bad_sequence) == (False, 3)
    assert stale.reason is not None
    assert "not sealed" in stale.reason
    # A record planted with an old timestamp (behind the sealer's back) is stale at once.
    await execute(engine, "UPDATE audit_logs SET timestamp = '2001-01-01 00:00:00' WHERE sequence IS NULL")
    async with sessionmaker() as session:
        assert not (await verify_chain(session)).ok
    assert await seal_pending(sessionmaker) == 3
    async with sessionmaker() as session:
        result = await verify_chain(session, max_unsealed_age=timedelta(0))
    assert (result.ok, result.checked, result.pending) == (True, 5, 0)


async def test_stopping_the_sealer_seals_what_is_pending(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sealer = AuditSealer(sessionmaker, interval=3600)  # its loop would not come round again
    sealer.start()
    for _ in range(1000):  # its first pass (on an empty table) is done within a few ms
        if sealer.passes:
            break
        await asyncio.sleep(0.01)
    assert sealer.passes == 1
    await add_events(sessionmaker, 4, seal=False)
    assert await unsealed(sessionmaker) == 4
    await sealer.stop()
    assert await unsealed(sessionmaker) == 0
    async with sessionmaker() as session:
        assert (await verify_chain(session)).checked == 4


async def test_a_sealer_reports_lag_and_survives_a_broken_table(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    seen: list[int] = []
    sealer = AuditSealer(sessionmaker, interval=0.01, on_sealed=lambda stamps: seen.append(len(stamps)))
    sealer.start()
    try:
        await add_events(sessionmaker, 3, seal=False)
        await wait_until_sealed(sessionmaker)
        await execute(engine, "ALTER TABLE audit_chain_heads RENAME TO audit_chain_heads_moved")
        await add_events(sessionmaker, 2, seal=False)
        # Sealing fails now (logged, retried with backoff); the loop keeps running.
        assert await unsealed(sessionmaker) == 2
        await execute(engine, "ALTER TABLE audit_chain_heads_moved RENAME TO audit_chain_heads")
        await wait_until_sealed(sessionmaker)
    finally:
        await sealer.stop()
    assert sum(seen) == 5
    async with sessionmaker() as session:
        assert (await verify_chain(session)).checked == 5


def _insert_copy_sql(dialect: str) -> tuple[str, str]:
    record_id = str(uuid.uuid4()) if dialect == "postgresql" else uuid.uuid4().hex
    sql = (
        "INSERT INTO audit_logs (id, chain, sequence, timestamp, user_id, org_id, actor_type, action, "
        "resource_type, resource_id, status, details, ip_address, user_agent, request_id, prev_hash, hash) "
        "SELECT :id, chain, 7, timestamp, user_id, org_id, actor_type, 'login_success', resource_type, "
        "resource_id, status, details, ip_address, user_agent, request_id, hash, hash FROM audit_logs "
        "WHERE sequence = 6"
    )
    return sql, record_id


@pytest.mark.parametrize("kind", ["edit", "delete", "swap", "insert"])
async def test_tampering_with_records_the_background_sealer_just_sealed_is_caught(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine, kind: str
) -> None:
    sealer = AuditSealer(sessionmaker, interval=0.01)
    sealer.start()
    try:
        await add_events(sessionmaker, 10, seal=False)
        await wait_until_sealed(sessionmaker)
    finally:
        await sealer.stop()
    async with sessionmaker() as session:
        assert (await verify_chain(session)).checked == 10
    if kind == "edit":
        await execute(engine, "UPDATE audit_logs SET resource_id = 'forged' WHERE sequence = 7")
    elif kind == "delete":
        await execute(engine, "DELETE FROM audit_logs WHERE sequence = 7")
    elif kind == "swap":
        await execute(engine, "UPDATE audit_logs SET sequence = -1 WHERE sequence = 7")
        await execute(engine, "UPDATE audit_logs SET sequence = 7 WHERE sequence = 8")
        await execute(engine, "UPDATE audit_logs SET sequence = 8 WHERE sequence = -1")
    else:
        for sequence in range(10, 6, -1):
            await execute(
                engine,
                "UPDATE audit_logs SET sequence = :new WHERE sequence = :old",
                new=sequence + 1,
                old=sequence,
            )
        sql, record_id = _insert_copy_sql(engine.dialect.name)
        await execute(engine, sql, id=record_id)
        await execute(engine, "UPDATE audit_chain_heads SET sequence = 11")
    async with sessionmaker() as session:
        result = await verify_chain(session)
        tampered = await session.scalar(select(AuditLog.id).where(AuditLog.sequence == 7))
    assert (result.ok, result.first_bad_sequence) == (False, 7), result.describe()
    assert kind == "delete" or tampered is not None
