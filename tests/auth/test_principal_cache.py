"""The principal cache: a returning caller costs no query, and every withdrawal of access
reaches every instance within a second (docs/SECURITY.md), announced or not."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import event

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.notify.topics import REVOCATIONS
from agentkeep.rbac.permissions import Role
from tests.auth.helpers import bearer, register_and_login
from tests.orgs.helpers import create_key, key_header, make_team
from tests.support.databases import REDIS_URL
from tests.support.timing import eventually

# docs/SECURITY.md: revocation takes effect on every instance within one second.
REVOCATION_BOUND_SECONDS = 1.0


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    """Teams log several users in from one address: lift the auth limit."""
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(database_url=database_url, redis_url=redis_url, rate_limit_auth="1000/minute")


@pytest.fixture
async def second(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another instance: its own app, engine, hub and caches; same database and Redis."""
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://second") as http:
            yield http


class StatementCounter:
    def __init__(self, app: FastAPI) -> None:
        self.statements: list[str] = []
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)


async def test_a_returning_caller_is_answered_without_a_query(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    tokens = await register_and_login(client)
    headers = bearer(tokens["access_token"])
    assert (await client.get("/auth/me", headers=headers)).status_code == 200
    counter = StatementCounter(app)
    again = await client.get("/auth/me", headers=headers)
    assert again.status_code == 200
    assert counter.statements == []


async def test_a_revoked_api_key_is_refused_on_another_instance_within_a_second(
    client: httpx.AsyncClient, second: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    key = await create_key(client, team.headers(Role.ADMIN), ["members:read"])
    members = f"/api/orgs/{team.org_id}/members"
    assert (await second.get(members, headers=key_header(key))).status_code == 200  # remembered there
    revoked = await client.delete(f"/api/api-keys/{key['id']}", headers=team.headers(Role.ADMIN))
    assert revoked.status_code == 204
    assert (await client.get(members, headers=key_header(key))).status_code == 401

    async def refused_on_second() -> bool:
        return (await second.get(members, headers=key_header(key))).status_code == 401

    assert await eventually(refused_on_second, within=REVOCATION_BOUND_SECONDS)


async def test_a_removed_member_loses_access_on_another_instance_within_a_second(
    client: httpx.AsyncClient, second: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    members = f"/api/orgs/{team.org_id}/members"
    viewer = team.headers(Role.VIEWER)
    assert (await second.get(members, headers=viewer)).status_code == 200
    removed = await client.delete(f"{members}/{team.user_ids[Role.VIEWER]}", headers=team.headers(Role.OWNER))
    assert removed.status_code == 204, removed.text

    async def refused_on_second() -> bool:
        return (await second.get(members, headers=viewer)).status_code in (401, 403)

    assert await eventually(refused_on_second, within=REVOCATION_BOUND_SECONDS)


async def test_using_a_key_is_not_a_revocation(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Recording a key's last use writes the key row, but withdraws nothing: caches stay."""
    team = await make_team(client)
    key = await create_key(client, team.headers(Role.ADMIN), ["members:read"])
    announced: list[int] = []
    app.state.hub.on(REVOCATIONS, lambda: announced.append(1))
    used = await client.get(f"/api/orgs/{team.org_id}/members", headers=key_header(key))
    assert used.status_code == 200
    assert announced == []
    revoked = await client.delete(f"/api/api-keys/{key['id']}", headers=team.headers(Role.ADMIN))
    assert revoked.status_code == 204
    assert announced  # the revocation was
