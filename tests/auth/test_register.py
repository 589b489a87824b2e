"""POST /auth/register: normalisation, policy answers, duplicates, races, the switch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.users.models import User
from tests.auth.helpers import PASSWORD, register


async def stored_users(url: str) -> list[User]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(select(User))).all())  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def test_register_answers_the_normalised_user_without_the_hash(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await register(client, username="  Alice ", email=" Alice@Example.COM ")
    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "alice"
    assert body["email"] == "alice@example.com"
    assert body["is_superuser"] is False
    assert "password" not in response.text
    assert "argon2" not in response.text
    [user] = await stored_users(settings.database_url)
    assert user.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("password", "code", "says"),
    [
        ("short pw", "too_short", "at least 12 characters"),
        ("password1234", "common", "commonly used"),
        ("zzzzzzzzzzzzzzzz", "repetitive", "repeated"),
        ("alice@example.com", "matches_account", "username or email"),
        ("y" * 300, "too_long", "at most 256"),
    ],
)
async def test_a_refused_password_answers_422_saying_why(
    client: httpx.AsyncClient, password: str, code: str, says: str
) -> None:
    response = await register(client, password=password)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["password_problems"] == [code]
    assert says in response.json()["detail"]
    assert password not in response.text


async def test_duplicate_username_or_email_in_any_case_is_409(client: httpx.AsyncClient) -> None:
    assert (await register(client)).status_code == 201
    same_name = await register(client, username="ALICE", email="other@example.com")
    same_email = await register(client, username="alice2", email="ALICE@example.com")
    assert same_name.status_code == 409
    assert same_name.json()["field"] == "username"
    assert same_email.status_code == 409
    assert same_email.json()["field"] == "email"


async def test_two_racing_registrations_give_one_201_and_one_409(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    first, second = await asyncio.gather(
        register(client, username="racer", email="racer@example.com"),
        register(client, username="Racer", email="racer@example.com"),
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    assert len(await stored_users(settings.database_url)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "email": "alice@example.com", "password": PASSWORD, "is_superuser": True},
        {"username": "alice", "email": "not-an-email", "password": PASSWORD},
        {"username": "a" * 65, "email": "alice@example.com", "password": PASSWORD},
        {"username": "al ice", "email": "alice@example.com", "password": PASSWORD},
        {"username": "alice", "email": "alice@example.com", "password": ""},
        {"username": "alice", "email": "alice@example.com"},
    ],
    ids=["unknown-field", "bad-email", "long-username", "space-in-username", "empty-password", "missing"],
)
async def test_bad_registration_bodies_are_422_and_store_nothing(
    client: httpx.AsyncClient, settings: Settings, body: dict[str, object]
) -> None:
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 422
    assert await stored_users(settings.database_url) == []


async def test_registration_can_be_closed(make_settings: Callable[..., Settings], sqlite_url: str) -> None:
    app = create_app(make_settings(database_url=sqlite_url, allow_registration=False))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await register(http)
    assert response.status_code == 403
    assert response.json()["title"] == "Registration is closed"
    assert await stored_users(sqlite_url) == []
