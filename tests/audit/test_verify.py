"""The verifier catches every kind of tampering, on SQLite and PostgreSQL, by raw SQL."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.checkpoint import CheckpointError, load_checkpoint
from agentkeep.audit.models import AuditLog
from agentkeep.audit.retention import ChainBroken, prune_before, signed_checkpoint
from agentkeep.audit.verify import VerifyResult, verify_chain
from tests.audit.conftest import add_events, execute

KEY = secrets.token_bytes(32)


async def _verify(sessionmaker: async_sessionmaker[AsyncSession], **kwargs: object) -> VerifyResult:
    async with sessionmaker() as session:
        return await verify_chain(session, **kwargs)  # type: ignore[arg-type]


async def test_an_untouched_chain_verifies(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await add_events(sessionmaker, 5)
    result = await _verify(sessionmaker, batch_size=2)
    assert (result.ok, result.checked, result.head_sequence) == (True, 5, 5)


async def test_an_empty_chain_verifies(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    assert (await _verify(sessionmaker)).ok


@pytest.mark.parametrize(
    ("sql", "bad"),
    [
        ("UPDATE audit_logs SET ip_address = '198.51.100.1' WHERE sequence = 3", 3),
        ("UPDATE audit_logs SET status = 'failure' WHERE sequence = 4", 4),
        ("UPDATE audit_logs SET user_agent = 'other' WHERE sequence = 1", 1),
        ("DELETE FROM audit_logs WHERE sequence = 3", 3),
        ("DELETE FROM audit_logs WHERE sequence = 5", 5),
        ("DELETE FROM audit_chain_heads", 1),
    ],
    ids=["edit-ip", "edit-status", "edit-first", "delete-middle", "delete-newest", "delete-head-row"],
)
async def test_edits_and_deletions_are_caught_at_the_first_bad_sequence(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine, sql: str, bad: int
) -> None:
    await add_events(sessionmaker, 5)
    await execute(engine, sql)
    result = await _verify(sessionmaker, batch_size=2)
    assert not result.ok
    assert result.first_bad_sequence == bad


async def test_an_edited_details_value_is_caught(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 3)
    async with sessionmaker() as session, session.begin():
        row = (await session.scalars(select(AuditLog).where(AuditLog.sequence == 2))).one()
        row.details = {"index": 99}
    result = await _verify(sessionmaker)
    assert (result.ok, result.first_bad_sequence) == (False, 2)


async def test_two_swapped_records_are_caught(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 5)
    # Swap the sequence numbers of records 2 and 3 (via a free slot: (chain, sequence) is unique).
    await execute(engine, "UPDATE audit_logs SET sequence = -1 WHERE sequence = 2")
    await execute(engine, "UPDATE audit_logs SET sequence = 2 WHERE sequence = 3")
    await execute(engine, "UPDATE audit_logs SET sequence = 3 WHERE sequence = -1")
    result = await _verify(sessionmaker)
    assert (result.ok, result.first_bad_sequence) == (False, 2)


async def test_an_inserted_record_is_caught(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 5)
    # Make room after record 2 and insert a copy of record 2 with a plausible prev_hash there.
    for sequence in (5, 4, 3):
        await execute(engine, f"UPDATE audit_logs SET sequence = {sequence + 1} WHERE sequence = {sequence}")  # noqa: S608
    await execute(
        engine,
        "INSERT INTO audit_logs (id, chain, sequence, timestamp, user_id, org_id, actor_type, action, "
        "resource_type, resource_id, status, details, ip_address, user_agent, request_id, prev_hash, hash) "
        "SELECT :id, chain, 3, timestamp, user_id, org_id, actor_type, 'login_success', resource_type, "
        "resource_id, status, details, ip_address, user_agent, request_id, hash, hash FROM audit_logs "
        "WHERE sequence = 2",
        # SQLite stores UUIDs as 32 hex digits, PostgreSQL as its uuid type.
        id=str(uuid.uuid4()) if engine.dialect.name == "postgresql" else uuid.uuid4().hex,
    )
    await execute(engine, "UPDATE audit_chain_heads SET sequence = 6")
    result = await _verify(sessionmaker)
    assert (result.ok, result.first_bad_sequence) == (False, 3)


async def test_truncation_of_the_newest_records_is_caught_against_a_checkpoint(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 5)
    async with sessionmaker() as session:
        checkpoint = await signed_checkpoint(session, KEY)
    await add_events(sessionmaker, 1)
    assert (await _verify(sessionmaker, checkpoint=checkpoint)).ok
    # Remove records 4..6 and rewind the head so the chain alone looks consistent.
    async with sessionmaker() as session:
        hash3 = (await session.scalars(select(AuditLog.hash).where(AuditLog.sequence == 3))).one()
    await execute(engine, "DELETE FROM audit_logs WHERE sequence > 3")
    await execute(engine, "UPDATE audit_chain_heads SET sequence = 3, hash = :h", h=hash3)
    assert (await _verify(sessionmaker)).ok
    result = await _verify(sessionmaker, checkpoint=checkpoint)
    assert not result.ok
    assert result.first_bad_sequence == 4


async def test_a_rewritten_chain_is_caught_against_a_checkpoint(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 3)
    async with sessionmaker() as session:
        checkpoint = await signed_checkpoint(session, KEY)
    await execute(engine, "DELETE FROM audit_logs")
    await execute(engine, "DELETE FROM audit_chain_heads")
    await add_events(sessionmaker, 3)  # a whole new, internally consistent chain
    result = await _verify(sessionmaker, checkpoint=checkpoint)
    assert (result.ok, result.first_bad_sequence) == (False, 3)


def test_a_checkpoint_with_a_wrong_signature_or_no_signature_is_refused() -> None:
    from agentkeep.audit.checkpoint import make_checkpoint

    made = make_checkpoint("global", 3, "a" * 64, datetime.now(UTC), KEY)
    assert load_checkpoint(made.to_json(), KEY) == made
    with pytest.raises(CheckpointError, match="signature"):
        load_checkpoint(made.to_json().replace('"sequence": 3', '"sequence": 2'), KEY)
    with pytest.raises(CheckpointError, match="signature"):
        load_checkpoint(made.to_json(), secrets.token_bytes(32))
    unsigned = make_checkpoint("global", 3, "a" * 64, datetime.now(UTC), None)
    with pytest.raises(CheckpointError, match="unsigned"):
        load_checkpoint(unsigned.to_json(), KEY)
    with pytest.raises(CheckpointError, match="not a valid"):
        load_checkpoint("{}", KEY)


async def test_a_broken_chain_is_never_checkpointed(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 2)
    await execute(engine, "UPDATE audit_logs SET action = 'logout' WHERE sequence = 1")
    async with sessionmaker() as session:
        with pytest.raises(ChainBroken, match="sequence 1"):
            await signed_checkpoint(session, KEY)


async def _prune(sessionmaker: async_sessionmaker[AsyncSession], before: datetime) -> int | None:
    async with sessionmaker() as session, session.begin():
        return (await prune_before(session, before)).through_sequence


async def test_pruning_keeps_the_rest_verifiable_and_records_itself(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 4)
    async with sessionmaker() as session:
        checkpoint = await signed_checkpoint(session, KEY)
    cutoff = datetime.now(UTC)
    await add_events(sessionmaker, 2)
    assert await _prune(sessionmaker, cutoff) == 4
    async with sessionmaker() as session:
        rows = list((await session.scalars(select(AuditLog).order_by(AuditLog.sequence))).all())
    assert [row.sequence for row in rows] == [5, 6, 7]
    assert rows[-1].action == "audit_pruned"
    assert rows[-1].details["through_sequence"] == 4
    assert (await _verify(sessionmaker)).ok
    assert (await _verify(sessionmaker, checkpoint=checkpoint)).ok  # the checkpoint is the anchor
    # Pruning again (everything) still verifies, and so do appends after it.
    assert await _prune(sessionmaker, datetime.now(UTC) + timedelta(seconds=1)) == 7
    await add_events(sessionmaker, 1)
    assert (await _verify(sessionmaker)).ok


async def test_deleting_the_oldest_records_or_moving_the_anchor_is_caught(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 3)
    await _prune(sessionmaker, datetime.now(UTC))
    await add_events(sessionmaker, 3)
    assert (await _verify(sessionmaker)).ok
    await execute(engine, "DELETE FROM audit_logs WHERE sequence = 4")
    assert (await _verify(sessionmaker)).first_bad_sequence == 4
    async with sessionmaker() as session:
        hash5 = (await session.scalars(select(AuditLog.hash).where(AuditLog.sequence == 5))).one()
    await execute(engine, "DELETE FROM audit_logs WHERE sequence = 5")
    await execute(engine, "UPDATE audit_chain_heads SET pruned_sequence = 5, pruned_hash = :h", h=hash5)
    result = await _verify(sessionmaker)
    assert (result.ok, result.first_bad_sequence) == (False, 6)
