"""`agentkeep audit verify|checkpoint|export|prune` as an operator runs them (subprocesses)."""

from __future__ import annotations

import csv
import io
import json
import secrets
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.context import RequestContext
from tests.audit.conftest import add_events, execute
from tests.test_cli import run_cli

# Each CLI call is a fresh interpreter; the heavier scenarios run on SQLite only (the
# in-process tests cover both backends for the same logic).
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def test_verify_passes_then_names_the_first_bad_sequence(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 4)
    ok = run_cli("audit", "verify", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "OK: 4 records" in ok.stdout
    await execute(engine, "UPDATE audit_logs SET resource_id = 'forged' WHERE sequence = 2")
    broken = run_cli("audit", "verify", cwd=tmp_path, env=env)
    assert broken.returncode == 1
    assert "BROKEN at sequence 2" in broken.stderr
    assert "Traceback" not in broken.stderr


@SQLITE_ONLY
async def test_checkpoint_file_detects_truncation(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 3)
    made = run_cli("audit", "checkpoint", "--output", "cp.json", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    checkpoint = json.loads((tmp_path / "cp.json").read_text())
    assert json.loads(made.stdout) == checkpoint
    assert checkpoint["sequence"] == 3
    assert len(checkpoint["signature"]) == 64
    assert (tmp_path / "cp.json").stat().st_mode & 0o077 == 0
    assert run_cli("audit", "verify", "--checkpoint", "cp.json", cwd=tmp_path, env=env).returncode == 0

    await execute(engine, "DELETE FROM audit_logs WHERE sequence = 3")
    await execute(
        engine,
        "UPDATE audit_chain_heads SET sequence = 2, hash = (SELECT hash FROM audit_logs WHERE sequence = 2)",
    )
    assert run_cli("audit", "verify", cwd=tmp_path, env=env).returncode == 0  # the chain alone looks fine
    truncated = run_cli("audit", "verify", "--checkpoint", "cp.json", cwd=tmp_path, env=env)
    assert truncated.returncode == 1
    assert "BROKEN at sequence 3" in truncated.stderr

    wrong_key = run_cli(
        "audit",
        "verify",
        "--checkpoint",
        "cp.json",
        cwd=tmp_path,
        env={**env, "AUDIT_HMAC_KEY": secrets.token_urlsafe(40)},
    )
    assert wrong_key.returncode == 1
    assert "signature" in wrong_key.stderr


@SQLITE_ONLY
async def test_export_streams_jsonl_and_csv_with_time_bounds(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    hostile = RequestContext(
        request_id="r", ip_address="203.0.113.1", user_agent='=HYPERLINK("x")\r\nfake: line'
    )
    from agentkeep.audit.actions import AuditAction
    from agentkeep.audit.service import record

    await add_events(sessionmaker, 2)
    async with sessionmaker() as session, session.begin():
        await record(session, AuditAction.LOGIN_FAILED, context=hostile, status="failure")

    jsonl = run_cli("audit", "export", "--format", "jsonl", cwd=tmp_path, env=env)
    assert jsonl.returncode == 0, jsonl.stderr
    lines = jsonl.stdout.splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert [item["sequence"] for item in records] == [1, 2, 3]
    assert records[2]["user_agent"] == '=HYPERLINK("x")\r\nfake: line'

    exported = run_cli("audit", "export", "--format", "csv", "--output", "out.csv", cwd=tmp_path, env=env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert [row["sequence"] for row in rows] == ["1", "2", "3"]
    assert rows[2]["user_agent"].startswith("'=HYPERLINK")
    assert json.loads(rows[0]["details"]) == {"index": 0}

    empty = run_cli("audit", "export", "--until", "2000-01-01", cwd=tmp_path, env=env)
    assert (empty.returncode, empty.stdout) == (0, "")
    bad = run_cli("audit", "export", "--since", "last tuesday", cwd=tmp_path, env=env)
    assert bad.returncode == 2


@SQLITE_ONLY
async def test_prune_writes_a_checkpoint_first_and_verify_stays_green(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_events(sessionmaker, 3)
    pruned = run_cli(
        "audit",
        "prune",
        "--before",
        "2999-01-01",
        "--checkpoint-output",
        "before-prune.json",
        cwd=tmp_path,
        env=env,
    )
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 3 records through sequence 3" in pruned.stderr
    assert json.loads((tmp_path / "before-prune.json").read_text())["sequence"] == 3
    verified = run_cli("audit", "verify", "--checkpoint", "before-prune.json", cwd=tmp_path, env=env)
    assert verified.returncode == 0, verified.stderr
    exported = run_cli("audit", "export", cwd=tmp_path, env=env)
    (only,) = [json.loads(line) for line in exported.stdout.splitlines()]
    assert (only["action"], only["sequence"], only["actor_type"]) == ("audit_pruned", 4, "system")


def test_verify_on_an_unmigrated_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "JWT_SECRET": secrets.token_urlsafe(40),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
    }
    result = run_cli("audit", "verify", cwd=tmp_path, env=env)
    assert result.returncode == 69
    assert "database error" in result.stderr
    assert "Traceback" not in result.stderr


@SQLITE_ONLY
async def test_verify_reports_unsealed_records_and_seal_chains_them(
    tmp_path: Path, env: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_events(sessionmaker, 2, seal=False)
    pending = run_cli("audit", "verify", cwd=tmp_path, env=env)
    assert pending.returncode == 0, pending.stderr
    assert "OK: 0 records, head 0, 2 not sealed yet" in pending.stdout
    stale = run_cli("audit", "verify", "--max-unsealed-age", "0", cwd=tmp_path, env=env)
    assert stale.returncode == 1
    assert "2 records not sealed" in stale.stderr
    sealed = run_cli("audit", "seal", cwd=tmp_path, env=env)
    assert sealed.returncode == 0, sealed.stderr
    assert "sealed 2 records" in sealed.stderr
    assert "OK: 2 records, head 2\n" in run_cli("audit", "verify", cwd=tmp_path, env=env).stdout
