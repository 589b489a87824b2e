"""The tools of an attacker who can write to the audit tables but does not hold the key.

They use plain SQL (through SQLAlchemy Core) and the published canonical form; a key they
use is a guess. Shared by the tests that play the attacker against `agentkeep audit`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkeep.audit.keys import AuditKey
from agentkeep.audit.models import AuditChainHead, AuditLog
from agentkeep.config import Settings
from agentkeep.db.base import utcnow
from tests.test_cli import run_cli

GUESSED_KEY = secrets.token_urlsafe(48)

Link = Callable[[dict[str, Any]], str]


def with_key(settings: Settings, key: str) -> Settings:
    """The application's settings holding `key` (the attacker's tools never read them)."""
    return settings.model_copy(update={"audit_hmac_key": SecretStr(key)})


def cli_env(settings: Settings, key: str | None) -> dict[str, str]:
    """The environment of an operator running `agentkeep audit` against the test database."""
    env = {"JWT_SECRET": secrets.token_urlsafe(40), "DATABASE_URL": settings.database_url}
    return env if key is None else {**env, "AUDIT_HMAC_KEY": key}


def swap(first: int, second: int) -> list[Any]:
    """Statements exchanging two sequence numbers (via a free slot: (chain, sequence) is unique)."""
    return [
        update(AuditLog).where(AuditLog.sequence == first).values(sequence=-1),
        update(AuditLog).where(AuditLog.sequence == second).values(sequence=first),
        update(AuditLog).where(AuditLog.sequence == -1).values(sequence=second),
    ]


def checkpoint(tmp_path: Path, env: dict[str, str], output: str = "cp.json") -> str:
    """Run `agentkeep audit checkpoint --output`; assert it succeeded and return its stderr."""
    made = run_cli("audit", "checkpoint", "--output", output, cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    return made.stderr


def verify(tmp_path: Path, env: dict[str, str], *args: str, expect: int = 1) -> list[str]:
    """Run `agentkeep audit verify`; assert its exit code and a clean failure; return its lines."""
    ran = run_cli("audit", "verify", *args, cwd=tmp_path, env=env)
    assert ran.returncode == expect, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    return [line.strip() for line in (ran.stderr + ran.stdout).splitlines()]


def named(lines: list[str], verdict: str) -> bool:
    return any(verdict in line for line in lines)


async def rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        found = await connection.execute(select(AuditLog.__table__).order_by(AuditLog.sequence))
        return [dict(row) for row in found.mappings()]


async def relink(engine: AsyncEngine, link: Link, start: int = 1) -> None:
    """The attacker recomputes every link from `start` on, as the chain's design describes."""
    chain = await rows(engine)
    prev = "0" * 64 if start == 1 else next(r["hash"] for r in chain if r["sequence"] == start - 1)
    async with engine.begin() as connection:
        for row in chain:
            if row["sequence"] is None or row["sequence"] < start:
                continue
            new_hash = link({**row, "prev_hash": prev})
            await connection.execute(
                update(AuditLog).where(AuditLog.id == row["id"]).values(prev_hash=prev, hash=new_hash)
            )
            last_prev, prev = prev, new_hash
        await connection.execute(update(AuditChainHead).values(hash=prev, prev_hash=last_prev))


async def sql(engine: AsyncEngine, *statements: Any) -> None:
    async with engine.begin() as connection:
        for statement in statements:
            await connection.execute(statement)


def forged_row(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**template, "id": uuid.uuid4(), "timestamp": utcnow(), "details": {"forged": True}, **changes}


def guessed_link(row: dict[str, Any]) -> str:
    return AuditKey(GUESSED_KEY).chain_hash(row)
