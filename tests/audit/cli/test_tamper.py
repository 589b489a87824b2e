"""An attacker with write access to the database but not AUDIT_HMAC_KEY, caught by the CLI.

Each test writes a genuine keyed chain through `record()` and the sealer, then tampers
with it the way someone holding only database credentials would (plain SQL and the
published canonical form; their key, when they use one, is a guess), and runs
`agentkeep audit verify` as an operator would, on SQLite and PostgreSQL. The expected
verdict lines are written from the attack performed: which record, and what was done to it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.canonical import record_hash
from agentkeep.audit.models import AuditChainHead, AuditLog
from agentkeep.db.base import utcnow
from tests.audit.attacker import (
    checkpoint,
    forged_row,
    guessed_link,
    named,
    relink,
    rows,
    sql,
    swap,
    verify,
)
from tests.audit.conftest import add_events
from tests.test_cli import run_cli

Link = Callable[[dict[str, Any]], str]


async def test_an_untouched_keyed_chain_verifies(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 3)
    assert all(row["mac"] and row["key_id"] for row in await rows(engine))
    ran = run_cli("audit", "verify", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert "OK: 3 records, head 3" in ran.stdout


@pytest.mark.parametrize(("link", "how"), [(record_hash, "plain SHA-256"), (guessed_link, "under the key")])
async def test_an_edit_with_the_whole_chain_recomputed_is_named(
    tmp_path: Path,
    env: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    link: Link,
    how: str,
) -> None:
    events = await add_events(sessionmaker, 6)
    await sql(engine, update(AuditLog).where(AuditLog.sequence == 3).values(ip_address="198.51.100.66"))
    await relink(engine, link, start=3)
    lines = verify(tmp_path, env)
    assert named(lines, f"BROKEN at sequence 3: edited: sequence 3 (record {events[2].id})")
    assert named(lines, "relinked: sequences 4..6")
    assert named(lines, how)


async def test_a_deleted_record_is_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 5)
    await sql(engine, delete(AuditLog).where(AuditLog.sequence == 4))
    assert named(verify(tmp_path, env), "deleted: sequence 4: record missing")


async def test_a_deletion_hidden_by_renumbering_is_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 6)
    await sql(
        engine,
        delete(AuditLog).where(AuditLog.sequence == 3),
        *(update(AuditLog).where(AuditLog.sequence == n).values(sequence=n - 1) for n in (4, 5, 6)),
        update(AuditChainHead).values(sequence=5),
    )
    lines = verify(tmp_path, env)
    assert named(lines, "deleted: sequences 3..5: the record sealed before it is missing")


async def test_an_inserted_sealed_record_is_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 5)
    chain = await rows(engine)
    for n in (5, 4, 3):
        await sql(engine, update(AuditLog).where(AuditLog.sequence == n).values(sequence=n + 1))
    # A forged record at 3 with a MAC-shaped value and a link made with a guessed key.
    fake = forged_row(chain[1], sequence=3, prev_hash=chain[1]["hash"], mac=secrets.token_hex(32))
    fake["hash"] = guessed_link(fake)
    await sql(engine, insert(AuditLog).values(fake), update(AuditChainHead).values(sequence=6))
    lines = verify(tmp_path, env)
    assert named(lines, f"inserted: sequence 3 (record {fake['id']}): not written by the application")
    assert named(lines, "reordered: sequences 4..6: moved")


async def test_swapped_records_are_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    events = await add_events(sessionmaker, 5)
    await sql(engine, *swap(2, 3))
    lines = verify(tmp_path, env)
    assert named(lines, f"reordered: sequence 2 (record {events[2].id}): moved")
    assert named(lines, f"reordered: sequence 3 (record {events[1].id}): moved")


async def test_swapped_records_with_the_chain_recomputed_are_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 5)
    await sql(engine, *swap(2, 3))
    await relink(engine, record_hash, start=2)
    # Every MAC still holds, so no record was edited; what the key shows is every link
    # from the first moved record on rewritten without it.
    lines = verify(tmp_path, env)
    assert named(lines, "BROKEN at sequence 2: relinked: sequences 2..5")
    assert not named(lines, "edited")
    assert not named(lines, "inserted")


async def test_truncation_is_named_by_the_chain_or_by_a_checkpoint(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 5)
    checkpoint(tmp_path, env)
    await sql(engine, delete(AuditLog).where(AuditLog.sequence > 3))
    assert named(verify(tmp_path, env), "truncated: sequence 4: records missing before the head")
    # Rewinding the head as well hides it from the chain alone, not from the checkpoint.
    hash3 = (await rows(engine))[-1]["hash"]
    await sql(engine, update(AuditChainHead).values(sequence=3, hash=hash3))
    assert named(
        verify(tmp_path, env, "--checkpoint", "cp.json"), "truncated: sequence 4: the checkpoint names"
    )


async def test_records_beyond_the_head_are_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 4)
    chain = await rows(engine)
    fake = forged_row(chain[-1], sequence=9, prev_hash=chain[-1]["hash"], hash=secrets.token_hex(32))
    await sql(engine, insert(AuditLog).values(fake))
    assert named(
        verify(tmp_path, env), f"beyond head: sequence 9 (record {fake['id']}): sealed past the chain head"
    )


async def test_a_forged_unsealed_record_is_refused_by_the_sealer_and_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 2)
    chain = await rows(engine)
    no_mac = forged_row(chain[0], sequence=None, prev_hash=None, hash=None, key_id=None, mac=None)
    copied_mac = forged_row(chain[0], sequence=None, prev_hash=None, hash=None)  # another record's MAC
    await sql(engine, insert(AuditLog).values(no_mac), insert(AuditLog).values(copied_mac))
    lines = verify(tmp_path, env)
    assert named(lines, f"forged MAC: unsealed record {no_mac['id']}: inserted, not sealed yet")
    assert named(lines, f"forged MAC: unsealed record {copied_mac['id']}: inserted, not sealed yet")

    # The sealer chains the genuine record written after them and refuses both, each once.
    await add_events(sessionmaker, 1, seal=False)
    for _ in range(2):
        sealed = run_cli("audit", "seal", cwd=tmp_path, env=env)
        assert sealed.returncode == 0, sealed.stderr
    after = {row["id"]: row for row in await rows(engine)}
    assert after[no_mac["id"]]["sequence"] is None
    assert after[copied_mac["id"]]["sequence"] is None
    assert {after[no_mac["id"]]["seal_refused"], after[copied_mac["id"]]["seal_refused"]} == {
        "missing_mac",
        "mac_mismatch",
    }
    detections = [row for row in after.values() if row["action"] == "audit_tamper_detected"]
    assert sorted(row["resource_id"] for row in detections) == sorted(
        [str(no_mac["id"]), str(copied_mac["id"])]
    )
    assert all(row["sequence"] is not None and row["actor_type"] == "system" for row in detections)
    assert [row["action"] for row in after.values() if row["sequence"] == 3] == ["agent_created"]
    lines = verify(tmp_path, env)
    assert named(
        lines, f"forged MAC: unsealed record {no_mac['id']}: inserted, refused by the sealer (missing_mac)"
    )
    assert len(lines) == 2  # the two forged records; the chain, detections included, is intact


async def test_an_edited_unsealed_record_is_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    (event,) = await add_events(sessionmaker, 1, seal=False)
    await sql(engine, update(AuditLog).where(AuditLog.id == event.id).values(user_agent="someone else"))
    lines = verify(tmp_path, env)
    assert named(
        lines, f"forged MAC: unsealed record {event.id}: edited, not sealed yet: its content does not match"
    )


async def test_stripping_the_keys_from_the_chain_is_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 3)
    await sql(engine, update(AuditLog).values(key_id=None, mac=None))
    await relink(engine, record_hash)
    assert named(verify(tmp_path, env), "edited: sequences 1..3: its key id and MAC were removed")


async def test_a_chain_replaced_by_unkeyed_records_is_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 3)
    chain = await rows(engine)
    fresh = [forged_row(row, key_id=None, mac=None) for row in chain]
    await sql(engine, delete(AuditLog), *(insert(AuditLog).values(row) for row in fresh))
    await relink(engine, record_hash)
    assert named(verify(tmp_path, env), "downgraded: sequence 3: the newest record is unkeyed")


async def test_a_stale_unsealed_record_is_named(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    (event,) = await add_events(sessionmaker, 1, seal=False)
    old = utcnow() - timedelta(minutes=5)
    # A genuine record cannot be back-dated without breaking its MAC: both are named.
    await sql(engine, update(AuditLog).where(AuditLog.id == event.id).values(timestamp=old))
    lines = verify(tmp_path, env)
    assert named(lines, f"forged MAC: unsealed record {event.id}: edited")
    assert named(lines, "not sealed: sequence 1: 1 records not sealed, the oldest for more than 60 s")
