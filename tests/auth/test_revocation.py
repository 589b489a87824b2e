"""Logout, password change and disabling take effect at once on every instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from agentkeep.app import create_app
from agentkeep.auth.dependencies import CurrentPrincipal, Principal, SuperuserPrincipal
from agentkeep.config import Settings
from tests.auth.helpers import PASSWORD, bearer, login, register_and_login
from tests.support.timing import eventually

NEW_PASSWORD = "an entirely new passphrase 7"
# docs/SECURITY.md: a revocation takes effect on every instance within one second (at once on
# the instance that made it, and wherever the announcement arrives first).
REVOCATION_BOUND_SECONDS = 1.0


@pytest.fixture
async def second(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another instance of the service: its own app, engine and memory; same database and Redis."""
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://second") as http:
            yield http


async def me(client: httpx.AsyncClient, tokens: dict[str, Any]) -> int:
    return (await client.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code


async def test_logout_on_one_instance_revokes_on_the_other(
    client: httpx.AsyncClient, second: httpx.AsyncClient
) -> None:
    tokens = await register_and_login(client)
    kept = (await login(client)).json()
    assert await me(second, tokens) == 200

    response = await client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    assert response.status_code == 204

    assert await me(client, tokens) == 401

    async def refused_on_second() -> bool:
        return await me(second, tokens) == 401

    assert await eventually(refused_on_second, within=REVOCATION_BOUND_SECONDS)
    refreshed = await second.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    # Logout ends one session, not the user's other logins.
    assert await me(second, kept) == 200


async def test_password_change_revokes_every_session_on_every_instance(
    client: httpx.AsyncClient, second: httpx.AsyncClient
) -> None:
    first_login = await register_and_login(client)
    second_login = (await login(second)).json()

    response = await second.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(second_login["access_token"]),
    )
    assert response.status_code == 204

    for tokens in (first_login, second_login):
        assert await me(client, tokens) == 401
        assert await me(second, tokens) == 401
        refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 401
    assert (await login(client)).status_code == 401
    fresh = await login(client, password=NEW_PASSWORD)
    assert fresh.status_code == 200
    assert await me(second, fresh.json()) == 200


async def test_password_change_needs_the_current_password_and_the_policy(
    client: httpx.AsyncClient,
) -> None:
    tokens = await register_and_login(client)
    wrong = await client.post(
        "/auth/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert wrong.status_code == 403
    weak = await client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "password1234"},
        headers=bearer(tokens["access_token"]),
    )
    assert weak.status_code == 422
    assert weak.json()["password_problems"] == ["common"]
    # Neither attempt changed anything or ended the session.
    assert await me(client, tokens) == 200
    assert (await login(client)).status_code == 200


async def test_logout_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.post("/auth/logout")).status_code == 401


async def test_principal_and_superuser_dependencies(settings: Settings) -> None:
    app: FastAPI = create_app(settings)

    @app.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"kind": principal.kind, "org": principal.org_id, "user": principal.user.username}

    @app.get("/admin-only")
    async def admin_only(principal: SuperuserPrincipal) -> dict[str, str]:
        return {"ok": principal.user.username}

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            tokens = await register_and_login(http)
            who = await http.get("/whoami", headers=bearer(tokens["access_token"]))
            denied = await http.get("/admin-only", headers=bearer(tokens["access_token"]))
    assert who.json()["kind"] == "user"
    assert who.json()["user"] == "alice"
    assert who.json()["org"] is not None  # the personal organization
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert Principal.__dataclass_fields__.keys() >= {"user_id", "user", "session_id", "jti", "org_id", "kind"}
