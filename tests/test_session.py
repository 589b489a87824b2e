"""The request session commits once when the endpoint succeeds and leaves nothing on failure."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.db.session import SessionDep
from agentkeep.errors import Conflict
from agentkeep.users.models import User


@pytest.fixture
async def session_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)

    @app.post("/_test/users/{name}")
    async def add_user(
        name: str, session: SessionDep, fail: str = "", nested: bool = False
    ) -> dict[str, str]:
        if nested:
            # The request's first write inside a savepoint: releasing it must not commit.
            async with session.begin_nested():
                session.add(User(username=name, email=f"{name}@example.com", password_hash="x"))
                await session.flush()
        else:
            session.add(User(username=name, email=f"{name}@example.com", password_hash="x"))
            await session.flush()
        if fail == "conflict":
            raise Conflict("refused after the write")
        if fail == "crash":
            raise RuntimeError("crashed after the write")
        return {"name": name}

    @app.get("/_test/users/count")
    async def count(session: SessionDep) -> dict[str, int]:
        return {"count": int(await session.scalar(select(func.count()).select_from(User)) or 0)}

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def _count(http: httpx.AsyncClient) -> int:
    return int((await http.get("/_test/users/count")).json()["count"])


async def test_successful_request_is_committed(session_client: httpx.AsyncClient) -> None:
    name = f"u{uuid.uuid4().hex[:8]}"
    assert (await session_client.post(f"/_test/users/{name}")).status_code == 200
    assert await _count(session_client) == 1


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize(("fail", "status"), [("conflict", 409), ("crash", 500)])
async def test_failed_request_leaves_nothing_written(
    session_client: httpx.AsyncClient, fail: str, status: int, nested: bool
) -> None:
    params: dict[str, str | bool] = {"fail": fail, "nested": nested}
    response = await session_client.post(f"/_test/users/u{uuid.uuid4().hex[:8]}", params=params)
    assert response.status_code == status
    assert await _count(session_client) == 0


async def test_commit_failure_is_an_error_not_a_lost_success(session_client: httpx.AsyncClient) -> None:
    assert (await session_client.post("/_test/users/dupe")).status_code == 200
    # The unique constraint fails at flush inside the request: the client must not see 200.
    response = await session_client.post("/_test/users/dupe")
    assert response.status_code == 500
    assert await _count(session_client) == 1
