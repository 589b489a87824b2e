"""Concurrent audited requests and concurrent sealers: one gap-free chain, each record sealed once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.app import create_app
from agentkeep.audit.actions import AuditAction
from agentkeep.audit.models import AuditLog
from agentkeep.audit.sealing import AuditSealer, seal_pending
from agentkeep.audit.service import AuditDep
from agentkeep.audit.verify import verify_chain
from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.db.session import SessionDep
from agentkeep.users.models import User
from tests.audit.conftest import add_events, unsealed, wait_until_sealed

REQUESTS = {"postgres": 200, "sqlite": 50}


def _user_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.post("/_test/users/{name}")
    async def add_user(name: str, session: SessionDep, audit: AuditDep) -> dict[str, str]:
        user = User(id=uuid.uuid4(), username=name, email=f"{name}@example.com", password_hash="x")
        session.add(user)
        await audit.record(AuditAction.USER_REGISTERED, user_id=user.id, details={"name": name})
        return {"id": str(user.id)}

    return app


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    # The whole burst is admitted at once: the chain is under test, not MAX_REQUESTS_IN_FLIGHT.
    app = _user_app(settings.model_copy(update={"max_requests_in_flight": max(REQUESTS.values())}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AuditLog]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(AuditLog).order_by(AuditLog.sequence))).all())


async def test_concurrent_audited_requests_form_one_gap_free_chain(
    backend: str,
    served: tuple[FastAPI, httpx.AsyncClient],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app, http = served
    count = REQUESTS[backend]
    # A second sealer (another API instance) races the app's own for the same chain.
    rival = AuditSealer(sessionmaker, interval=0.01)
    rival.start()
    try:
        responses = await asyncio.gather(*(http.post(f"/_test/users/u{index}") for index in range(count)))
        assert [response.status_code for response in responses] == [200] * count
        await wait_until_sealed(app.state.sessionmaker)
    finally:
        await rival.stop()
    rows = await _rows(sessionmaker)
    assert [row.sequence for row in rows] == list(range(1, count + 1))
    assert sorted(row.details["name"] for row in rows) == sorted(f"u{index}" for index in range(count))
    assert [row.prev_hash for row in rows[1:]] == [row.hash for row in rows[:-1]]
    # Sealed order is (timestamp, id) within each batch, so timestamps never go backwards
    # by more than one request's duration; the chain order itself is `sequence`.
    async with sessionmaker() as session:
        result = await verify_chain(session)
    assert result.ok, result.describe()
    assert (result.checked, result.pending) == (count, 0)


async def _sealer_loop(
    sessionmaker: async_sessionmaker[AsyncSession], stop: asyncio.Event, wait: bool
) -> int:
    sealed = 0
    while not stop.is_set():
        sealed += await seal_pending(sessionmaker, wait=wait, batch_size=7)
        await asyncio.sleep(0)
    return sealed + await seal_pending(sessionmaker, wait=True, batch_size=7)


async def test_racing_sealers_seal_each_record_exactly_once(
    backend: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # Three sealers on their own engines (as separate processes would be), two that skip a
    # chain another holds and one that waits for it, while records keep arriving.
    engines: list[AsyncEngine] = [create_engine(settings) for _ in range(3)]
    stop = asyncio.Event()
    sealers = [
        asyncio.create_task(_sealer_loop(create_sessionmaker(engine), stop, wait=index == 2))
        for index, engine in enumerate(engines)
    ]
    try:
        for _ in range(6):
            await add_events(sessionmaker, 10, seal=False)
            await add_events(sessionmaker, 5, seal=False, chain="org-a")
        stop.set()
        counts = await asyncio.gather(*sealers)
    finally:
        stop.set()
        for engine in engines:
            await engine.dispose()
    assert sum(counts) == 90  # every record sealed by exactly one of them
    assert await unsealed(sessionmaker) == 0
    async with sessionmaker() as session:
        for chain, expected in (("global", 60), ("org-a", 30)):
            sequences = list(
                (
                    await session.scalars(
                        select(AuditLog.sequence).where(AuditLog.chain == chain).order_by(AuditLog.sequence)
                    )
                ).all()
            )
            assert sequences == list(range(1, expected + 1))
            result = await verify_chain(session, chain)
            assert (result.ok, result.checked) == (True, expected), result.describe()


async def test_the_sealed_order_is_timestamp_then_id(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await add_events(sessionmaker, 6, seal=False)
    # Whatever order they were inserted or committed in, pending records seal by (timestamp, id).
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE audit_logs SET timestamp = '2030-01-01 00:00:00' WHERE 1 = 1"))
    await seal_pending(sessionmaker)
    async with sessionmaker() as session:
        ids = list((await session.scalars(select(AuditLog.id).order_by(AuditLog.sequence))).all())
        assert ids == sorted(ids)
        assert (await session.scalar(select(func.count()).select_from(AuditLog))) == 6
        assert (await verify_chain(session)).ok


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite serialises writers anyway
async def test_a_held_chain_lock_never_blocks_audited_requests(
    served: tuple[FastAPI, httpx.AsyncClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    app, http = served
    await add_events(sessionmaker, 1)
    async with engine.connect() as holder:
        # Hold the chain's head row as a stuck sealer would; requests must not notice.
        await holder.execute(text("SELECT * FROM audit_chain_heads WHERE chain = 'global' FOR UPDATE"))
        responses = await asyncio.wait_for(
            asyncio.gather(*(http.post(f"/_test/users/h{index}") for index in range(20))), timeout=20
        )
        assert [response.status_code for response in responses] == [200] * 20
        assert await unsealed(sessionmaker) == 20  # recorded, waiting for the lock to be free
        await holder.rollback()
    await wait_until_sealed(app.state.sessionmaker)
    async with sessionmaker() as session:
        result = await verify_chain(session)
    assert (result.ok, result.checked) == (True, 21), result.describe()
