"""GET /api/audit-logs (mounted on a test app): filters, newest-first cursor pages, bounds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import get_args

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.app import create_app
from agentkeep.audit.actions import AuditAction, AuditStatus
from agentkeep.audit.router import AuditReader
from agentkeep.audit.sealing import seal_pending
from agentkeep.audit.service import record
from agentkeep.auth.dependencies import Principal
from agentkeep.config import Settings
from agentkeep.context import RequestContext
from agentkeep.db.session import SessionDep
from agentkeep.pagination import decode_cursor, encode_cursor
from agentkeep.rbac.dependencies import RequirePermission
from agentkeep.rbac.permissions import Role
from agentkeep.users.models import User
from tests.audit.conftest import CONTEXT, add_events

ALICE = uuid.UUID(int=11)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    # Authorization is tested in tests/rbac/; here only the query, as a superuser sees it.
    superuser = User(id=uuid.uuid4(), username="root", email="root@example.com", is_superuser=True)
    principal = Principal(user_id=superuser.id, user=superuser, session_id=None, jti=None, role=Role.OWNER)
    reader: RequirePermission = get_args(AuditReader)[1].dependency  # require(audit:read)

    async def as_superuser(request: Request, session: SessionDep) -> Principal:
        # The route's own permission check, on this caller instead of a resolved one.
        return await reader.check(request, principal, session)

    app.dependency_overrides[reader] = as_superuser
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def _seed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await add_events(sessionmaker, 5)
    other = RequestContext(request_id=None, ip_address="198.51.100.9", user_agent=None)
    async with sessionmaker() as session, session.begin():
        await record(session, AuditAction.LOGIN_FAILED, context=other, status=AuditStatus.FAILURE)
        await record(
            session,
            AuditAction.AGENT_DELETED,
            context=CONTEXT,
            user_id=ALICE,
            resource_type="agent",
            resource_id="a1",
        )
    await seal_pending(sessionmaker)


async def test_pages_are_newest_first_and_cover_every_record_once(
    api: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _seed(sessionmaker)
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/audit-logs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(item["sequence"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user_id": str(ALICE)}, [7]),
        ({"action": "login_failed"}, [6]),
        ({"status": "failure"}, [6]),
        ({"resource_type": "agent", "resource_id": "a1"}, [7]),
        ({"ip_address": "198.51.100.9"}, [6]),
        ({"action": "agent_created", "limit": 2}, [5, 4]),
        ({"until": "2000-01-01T00:00:00Z"}, []),
    ],
)
async def test_filters_select_matching_records(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    params: dict[str, str | int],
    expected: list[int],
) -> None:
    await _seed(sessionmaker)
    response = await api.get("/api/audit-logs", params=params)
    assert response.status_code == 200, response.text
    assert [item["sequence"] for item in response.json()["items"]] == expected


async def test_time_range_filters_bound_the_listing(
    api: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_events(sessionmaker, 2)
    middle = datetime.now(UTC).isoformat()
    await add_events(sessionmaker, 1)
    newer = (await api.get("/api/audit-logs", params={"since": middle})).json()["items"]
    older = (await api.get("/api/audit-logs", params={"until": middle})).json()["items"]
    assert [item["sequence"] for item in newer] == [3]
    assert [item["sequence"] for item in older] == [2, 1]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"cursor": "not-a-cursor!"},
        {"cursor": encode_cursor({"t": "yesterday"})},
        {"cursor": "W10"},  # valid base64url JSON, but a list
        {"action": "no_such_action"},
        {"user_id": "nope"},
        {"unknown": "1"},
    ],
)
async def test_bad_parameters_are_422_problems(api: httpx.AsyncClient, params: dict[str, str | int]) -> None:
    response = await api.get("/api/audit-logs", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_cursors_round_trip_and_are_opaque_base64url() -> None:
    cursor = encode_cursor({"t": "2026-01-01T00:00:00+00:00", "id": "x"})
    assert "=" not in cursor
    assert "+" not in cursor
    assert "/" not in cursor
    assert decode_cursor(cursor) == {"t": "2026-01-01T00:00:00+00:00", "id": "x"}
