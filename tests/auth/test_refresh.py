"""POST /auth/refresh: rotation, reuse revoking the family, one winner among concurrent uses."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.auth.models import AuthSession, RefreshToken
from agentkeep.config import Settings
from agentkeep.users.models import User
from tests.auth.helpers import bearer, login, register_and_login


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def me(client: httpx.AsyncClient, tokens: dict[str, Any]) -> int:
    return (await client.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code


async def test_refresh_rotates_and_the_old_token_stops_working(client: httpx.AsyncClient) -> None:
    first = await register_and_login(client)
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert await me(client, second) == 200
    third = await refresh(client, second["refresh_token"])
    assert third.status_code == 200


async def test_reusing_a_rotated_token_revokes_the_whole_family(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    stolen = await register_and_login(client)
    legit = (await refresh(client, stolen["refresh_token"])).json()
    other_login = (await login(client)).json()

    reuse = await refresh(client, stolen["refresh_token"])
    assert reuse.status_code == 401
    # Every token of that login is dead: the rotated refresh token and both access tokens.
    assert (await refresh(client, legit["refresh_token"])).status_code == 401
    assert await me(client, legit) == 401
    assert await me(client, stolen) == 401
    # Another login of the same user is a different family and lives on.
    assert await me(client, other_login) == 200
    assert (await refresh(client, other_login["refresh_token"])).status_code == 200

    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            reasons = set((await connection.execute(select(AuthSession.revoked_reason))).scalars())
    finally:
        await engine.dispose()
    assert reasons == {"refresh_token_reused", None}


async def test_concurrent_refreshes_with_one_token_give_exactly_one_success(
    client: httpx.AsyncClient,
) -> None:
    tokens = await register_and_login(client)
    answers = await asyncio.gather(*(refresh(client, tokens["refresh_token"]) for _ in range(5)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 401, 401, 401, 401]


@pytest.mark.parametrize(
    "token", ["akr_" + "A" * 43, "garbage", "eyJhbGciOiJIUzI1NiJ9.e30.x"], ids=["unknown", "junk", "a-jwt"]
)
async def test_unknown_refresh_tokens_are_401(client: httpx.AsyncClient, token: str) -> None:
    await register_and_login(client)
    assert (await refresh(client, token)).status_code == 401


async def test_an_access_token_is_not_a_refresh_token(client: httpx.AsyncClient) -> None:
    tokens = await register_and_login(client)
    response = await client.post("/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert response.status_code in {401, 422}
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200


async def test_an_expired_refresh_token_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    tokens = await register_and_login(client)
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            past = RefreshToken.issued_at  # any earlier instant will do
            await connection.execute(update(RefreshToken).values(expires_at=past))
    finally:
        await engine.dispose()
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


async def test_a_disabled_user_cannot_refresh_or_use_tokens(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tokens = await register_and_login(client)
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(update(User).values(is_active=False))
    finally:
        await engine.dispose()
    assert await me(client, tokens) == 401
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": ""}, {"refresh_token": "x" * 200}, {"refresh_token": "akr_x", "extra": 1}],
    ids=["missing", "empty", "too-long", "unknown-field"],
)
async def test_bad_refresh_bodies_are_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert (await client.post("/auth/refresh", json=body)).status_code == 422
