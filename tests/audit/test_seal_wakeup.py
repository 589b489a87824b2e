"""What wakes the sealer (docs/audit.md, "Where it runs"): a commit of records in its own
process, at once; records another process wrote, its once-a-second safety poll."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction
from agentkeep.audit.commit_signal import attach_commit_signal
from agentkeep.audit.models import AuditLog
from agentkeep.audit.sealing import SEAL_POLL_SECONDS, AuditSealer
from agentkeep.audit.service import record
from agentkeep.audit.verify import verify_chain
from agentkeep.config import Settings
from tests.audit.conftest import CONTEXT, add_events, wait_until_sealed
from tests.auth.helpers import register
from tests.support.processes import run_agentkeep
from tests.support.timing import SCHEDULING_MARGIN_SECONDS

# Longer than any test runs: a sealer with this poll seals only when it is woken (or stopped).
NEVER = 3600.0


class Signals:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def _record(session: AsyncSession) -> None:
    await record(session, AuditAction.AGENT_CREATED, context=CONTEXT)


async def _passed(sealer: AuditSealer, more_than: int) -> None:
    while sealer.passes <= more_than:  # noqa: ASYNC110 (the sealer's own counter)
        await asyncio.sleep(0.01)


async def test_the_signal_follows_each_commit_that_wrote_records_and_nothing_else(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    signals = Signals()
    attach_commit_signal(engine, signals)

    async with sessionmaker() as session, session.begin():
        await _record(session)
        await _record(session)
        assert signals.count == 0  # written, not committed
    assert signals.count == 1  # one commit, one signal

    async with sessionmaker() as session, session.begin():
        await session.execute(text("SELECT 1"))
    assert signals.count == 1  # a commit without records

    async with sessionmaker() as session:
        await _record(session)
        await session.rollback()
        async with session.begin():
            await session.execute(text("SELECT 1"))
    assert signals.count == 1  # the rolled-back record is not announced by a later commit

    async with sessionmaker() as session, session.begin():
        async with session.begin_nested():
            await _record(session)
        assert signals.count == 1  # a released savepoint is not a commit
    assert signals.count == 2


async def test_a_woken_sealer_seals_records_of_its_process_without_its_poll(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sealer = AuditSealer(sessionmaker, interval=NEVER)
    sealer.start()
    attach_commit_signal(engine, sealer.wake)
    try:
        await asyncio.wait_for(_passed(sealer, 0), SCHEDULING_MARGIN_SECONDS)  # first pass, empty
        for _ in range(3):  # each commit wakes it; passes are spaced, so some share a pass
            await add_events(sessionmaker, 4, seal=False)
            await wait_until_sealed(sessionmaker)
    finally:
        await sealer.stop()
    async with sessionmaker() as session:
        result = await verify_chain(session)
    assert (result.ok, result.checked, result.pending) == (True, 12, 0)


async def test_records_of_a_request_are_sealed_by_the_app_s_woken_sealer(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    sealer: AuditSealer = app.state.audit_sealer
    sealer.interval = NEVER  # from its next wait on, only a wake-up makes it pass
    await asyncio.wait_for(_passed(sealer, sealer.passes), SEAL_POLL_SECONDS + SCHEDULING_MARGIN_SECONDS)
    passes = sealer.passes

    assert (await register(client, "sealed")).status_code == 201

    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    await wait_until_sealed(sessionmaker)
    assert sealer.passes > passes
    async with sessionmaker() as session:
        actions = (await session.scalars(select(AuditLog.action))).all()
    assert AuditAction.USER_REGISTERED.value in actions


async def test_records_another_process_wrote_are_sealed_by_the_safety_poll(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    sealer = AuditSealer(sessionmaker)  # the API's defaults
    sealer.start()
    try:
        env = {
            "JWT_SECRET": settings.jwt_secret.get_secret_value(),
            "DATABASE_URL": settings.database_url,
            "AGENTKEEP_ADMIN_PASSWORD": "operator chosen passphrase 9",
        }
        args = ("create-admin", "--username", "operator", "--email", "operator@example.com")
        created = await asyncio.to_thread(run_agentkeep, *args, cwd=tmp_path, env=env)
        assert created.returncode == 0, created.stderr
        # The process has exited: its records wait for this sealer's poll, nothing wakes it.
        await wait_until_sealed(sessionmaker, SEAL_POLL_SECONDS + SCHEDULING_MARGIN_SECONDS)
    finally:
        await sealer.stop()
    async with sessionmaker() as session:
        written = await session.scalar(select(func.count()).select_from(AuditLog))
        result = await verify_chain(session)
    assert written
    assert (result.ok, result.checked, result.pending) == (True, written, 0)
