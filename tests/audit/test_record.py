"""record(): every event once with complete fields, atomic with the change it describes."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agentkeep.app import create_app
from agentkeep.audit.actions import AuditAction, AuditStatus
from agentkeep.audit.models import AuditLog
from agentkeep.audit.sealing import seal_pending
from agentkeep.audit.service import AuditDep, record
from agentkeep.audit.verify import verify_chain
from agentkeep.config import Settings
from agentkeep.context import RequestContext
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.db.session import SessionDep
from agentkeep.errors import Unauthorized
from agentkeep.users.models import User
from tests.audit.conftest import CONTEXT, add_events, execute, unsealed, wait_until_sealed
from tests.support.databases import create_postgres_database, drop_postgres_database, migrate, unavailable

HEX64 = re.compile(r"^[0-9a-f]{64}$")


async def _all(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AuditLog]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(AuditLog).order_by(AuditLog.sequence))).all())


async def test_each_action_is_recorded_exactly_once_with_complete_fields(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id, before = uuid.uuid4(), datetime.now(UTC) - timedelta(seconds=1)
    for action in AuditAction:
        async with sessionmaker() as session, session.begin():
            await record(
                session,
                action,
                context=CONTEXT,
                user_id=user_id,
                resource_type="thing",
                resource_id=uuid.UUID(int=1),
                details={"action": action.value},
            )
    # Stored at once, chained by the sealer afterwards.
    assert {(row.sequence, row.prev_hash, row.hash) for row in await _all(sessionmaker)} == {
        (None, None, None)
    }
    assert await seal_pending(sessionmaker) == len(AuditAction)
    rows = await _all(sessionmaker)
    assert sorted(row.action for row in rows) == sorted(action.value for action in AuditAction)
    assert [row.sequence for row in rows] == list(range(1, len(AuditAction) + 1))
    previous = "0" * 64
    for row in rows:
        assert row.chain == "global"
        assert row.user_id == user_id
        assert row.actor_type == "user"
        assert row.status == "success"
        assert (row.resource_type, row.resource_id) == ("thing", str(uuid.UUID(int=1)))
        assert row.details == {"action": row.action}
        assert (row.ip_address, row.user_agent, row.request_id) == (
            "203.0.113.7",
            "pytest-agent/1.0",
            "req-1",
        )
        assert before < row.timestamp <= datetime.now(UTC)
        assert row.prev_hash == previous
        assert row.hash is not None
        assert HEX64.match(row.hash)
        previous = row.hash


async def test_a_rolled_back_event_leaves_no_gap(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        await record(session, AuditAction.AGENT_CREATED, context=CONTEXT)
        await session.rollback()
    async with sessionmaker() as session, session.begin():
        recorded = await record(session, AuditAction.AGENT_UPDATED, context=CONTEXT)
    await seal_pending(sessionmaker)
    (row,) = await _all(sessionmaker)
    assert (row.id, row.sequence) == (recorded.id, 1)
    async with sessionmaker() as session:
        assert (await verify_chain(session)).ok


async def test_unknown_action_or_status_is_a_programming_error(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(ValueError, match="not_an_action"):
            await record(session, "not_an_action", context=CONTEXT)
        with pytest.raises(ValueError, match="maybe"):
            await record(session, AuditAction.LOGOUT, context=CONTEXT, status="maybe")


def _audited_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.post("/_test/users/{name}")
    async def add_user(name: str, session: SessionDep, audit: AuditDep, bad: bool = False) -> dict[str, str]:
        user = User(id=uuid.uuid4(), username=name, email=f"{name}@example.com", password_hash="x")
        session.add(user)  # not flushed: record() flushes the caller's changes first
        details: dict[str, object] = {"username": name, "password": "hunter2hunter2"}
        if bad:
            details["unstorable"] = object()
        await audit.record(
            AuditAction.USER_REGISTERED,
            user_id=user.id,
            resource_type="user",
            resource_id=user.id,
            details=details,
        )
        return {"id": str(user.id)}

    @app.post("/_test/login/{name}")
    async def failed_login(name: str, audit: AuditDep) -> None:
        audit.failure(
            AuditAction.LOGIN_FAILED,
            status=AuditStatus.FAILURE,
            details={"username": name, "reason": "bad_password"},
        )
        raise Unauthorized("Incorrect username or password")

    return app


@pytest.fixture
async def audited_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(_audited_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        headers = {"user-agent": "audit-test/2"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as http:
            yield http


async def _users(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def test_change_and_its_record_commit_together(
    audited_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await audited_client.post("/_test/users/ann")
    assert response.status_code == 200
    (row,) = await _all(sessionmaker)
    assert row.action == "user_registered"
    assert row.resource_id == response.json()["id"]
    assert row.details == {"username": "ann", "password": "[REDACTED]"}
    assert row.ip_address == "127.0.0.1"
    assert row.request_id == response.headers["x-request-id"]


async def test_an_unwritable_record_is_a_503_and_the_change_is_rolled_back(
    audited_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await audited_client.post("/_test/users/bob", params={"bad": "true"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "unstorable" not in response.text
    assert await _users(sessionmaker) == 0
    assert await _all(sessionmaker) == []


async def test_the_callers_own_constraint_error_is_not_blamed_on_the_audit_log(
    audited_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert (await audited_client.post("/_test/users/dave")).status_code == 200
    duplicate = await audited_client.post("/_test/users/dave")
    assert duplicate.status_code == 500  # the unique violation, not a 503 "audit unavailable"
    assert len(await _all(sessionmaker)) == 1


async def test_a_failure_record_survives_the_failed_request(
    audited_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await audited_client.post("/_test/login/mallory")
    assert response.status_code == 401
    (row,) = await _all(sessionmaker)
    assert (row.action, row.status) == ("login_failed", "failure")
    assert row.details == {"username": "mallory", "reason": "bad_password"}


async def test_the_fixes_report_sql_check_shows_logins_with_ip_and_user_agent(
    audited_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await audited_client.post("/_test/login/eve")
    async with sessionmaker() as session:
        rows = (
            (
                await session.execute(
                    text(
                        "SELECT * FROM audit_logs WHERE action IN ('login_success','login_failed') "
                        "ORDER BY timestamp DESC"
                    )
                )
            )
            .mappings()
            .all()
        )
    assert len(rows) == 1
    assert rows[0]["ip_address"] == "127.0.0.1"
    assert rows[0]["user_agent"] == "audit-test/2"


@pytest.fixture
async def broken_audit_settings(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    make_settings: Callable[..., Settings],
    postgres_url: str | None,
) -> AsyncIterator[Settings]:
    """A private, migrated database whose audit table has been dropped."""
    if backend == "postgres":
        if postgres_url is None:
            unavailable("PostgreSQL")
        url = await create_postgres_database("agentkeep_audit_broken")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('broken') / 'broken.db'}"
    await migrate(url)
    settings = make_settings(database_url=url)
    engine = create_engine(settings)
    await execute(engine, "DROP TABLE audit_logs")
    await engine.dispose()
    yield settings
    if backend == "postgres":
        await drop_postgres_database(url)


async def test_a_failing_audit_table_is_a_503_and_no_user_is_created(broken_audit_settings: Settings) -> None:
    app = _audited_app(broken_audit_settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.post("/_test/users/carol")
        assert response.status_code == 503
        assert response.json()["type"] == "urn:agentkeep:problem:audit-unavailable"
        # A missing table is a fault of the deployment, not an outage to wait out.
        assert "retry-after" not in response.headers
        assert await _users(app.state.sessionmaker) == 0


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_an_audit_write_the_database_does_not_answer_is_a_503_with_retry_after(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    """A statement timeout on the audit insert is an outage: the client is told when to retry."""
    app = _audited_app(make_settings(database_url=database_url, db_command_timeout=1))
    locker = create_engine(make_settings(database_url=database_url))
    try:
        async with LifespanManager(app) as manager, locker.connect() as lock:
            await lock.execute(text("LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE"))
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                response = await http.post("/_test/users/dave")
            await lock.rollback()
            assert response.status_code == 503
            assert response.json()["type"] == "urn:agentkeep:problem:audit-unavailable"
            assert int(response.headers["retry-after"]) >= 1
            assert await _users(app.state.sessionmaker) == 0
    finally:
        await locker.dispose()


async def test_a_failure_after_a_record_in_one_request_is_written_after_it_without_deadlock(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    app = create_app(settings)

    @app.post("/_test/both")
    async def both(audit: AuditDep) -> None:
        audit.failure(AuditAction.PERMISSION_DENIED, status=AuditStatus.DENIED)
        await audit.record(AuditAction.AGENT_CREATED)

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await asyncio.wait_for(http.post("/_test/both"), timeout=30)
        await wait_until_sealed(sessionmaker)
    assert response.status_code == 200
    rows = await _all(sessionmaker)
    # The change's record commits with the request; the failure follows in its own transaction.
    assert [(row.action, row.sequence) for row in rows] == [("agent_created", 1), ("permission_denied", 2)]


async def test_awkward_text_hashes_the_same_in_the_database_and_in_the_verifier(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    awkward = 'é ü 漢字 🙂 "quoted" back\\slash \r\n\t \u2028 @prev-x@ @seq-y@'
    context = RequestContext(request_id=awkward[:20], ip_address="2001:db8::1", user_agent=awkward)
    async with sessionmaker() as session, session.begin():
        await record(
            session,
            AuditAction.AGENT_UPDATED,
            context=context,
            resource_id=awkward,
            details={awkward: [awkward, 0.1, -7, None]},
        )
    await seal_pending(sessionmaker)
    async with sessionmaker() as session:
        result = await verify_chain(session)
    assert (result.ok, result.checked) == (True, 1), result.describe()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite has no table locks
async def test_an_audit_insert_that_cannot_complete_is_a_503_not_a_hang(
    backend: str, database_url: str, make_settings: Callable[..., Settings], engine: AsyncEngine
) -> None:
    settings = make_settings(database_url=database_url, db_command_timeout=1)
    await add_events(create_sessionmaker(engine), 1)
    async with engine.connect() as holder:
        await holder.execute(text("LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE"))
        app = _audited_app(settings)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                response = await http.post("/_test/users/frank")
        await holder.rollback()
    assert response.status_code == 503
    assert await _users(create_sessionmaker(engine)) == 0
    assert await unsealed(create_sessionmaker(engine)) == 0
