"""Without AUDIT_HMAC_KEY (development only) the chain is plain SHA-256: what that does not catch.

docs/audit.md ("What is and is not detected") promises these limits; the tests keep the
promise honest by performing the attacks a key would stop and showing they pass `verify`,
and that a checkpoint taken earlier still catches the rewrite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.canonical import record_hash
from agentkeep.audit.models import AuditLog
from agentkeep.config import Settings
from tests.audit.attacker import checkpoint, cli_env, forged_row, named, relink, rows, sql, verify
from tests.audit.conftest import add_events
from tests.test_cli import run_cli


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    assert settings.audit_hmac_key is None
    return cli_env(settings, None)


async def test_an_edit_with_the_chain_recomputed_passes_until_a_checkpoint(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 5)
    assert "unsigned" in checkpoint(tmp_path, env)
    await sql(engine, update(AuditLog).where(AuditLog.sequence == 3).values(ip_address="198.51.100.66"))
    await relink(engine, record_hash, start=3)
    assert named(verify(tmp_path, env, expect=0), "OK: 5 records, head 5")  # the limitation
    lines = verify(tmp_path, env, "--checkpoint", "cp.json")
    assert named(lines, "checkpoint mismatch: sequence 5")


async def test_a_planted_unsealed_record_is_sealed_as_genuine(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 2)
    planted = forged_row((await rows(engine))[0], sequence=None, prev_hash=None, hash=None)
    await sql(engine, insert(AuditLog).values(planted))
    sealed = run_cli("audit", "seal", cwd=tmp_path, env=env)
    assert sealed.returncode == 0, sealed.stderr
    assert [row["id"] for row in await rows(engine) if row["sequence"] == 3] == [planted["id"]]
    assert named(verify(tmp_path, env, expect=0), "OK: 3 records, head 3")
