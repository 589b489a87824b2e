"""POST /auth/login and GET /auth/me: the fixes report's flow, uniform failures, rehashing."""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.security.passwords import PasswordHasher, build_password_hash, normalise_password
from agentkeep.users.models import User
from tests.auth.helpers import PASSWORD, bearer, login, register, without_request_id


async def execute(url: str, statement: object) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(statement)  # type: ignore[call-overload]
    finally:
        await engine.dispose()


async def stored_hash(url: str, username: str) -> str:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            value = await connection.scalar(select(User.password_hash).where(User.username == username))
    finally:
        await engine.dispose()
    assert isinstance(value, str)
    return value


async def test_the_fixes_report_flow_register_login_form_then_me(client: httpx.AsyncClient) -> None:
    assert (await register(client, username="testuser", email="test@example.com")).status_code == 201
    response = await client.post(
        "/auth/login",
        content=f"username=testuser&password={PASSWORD.replace(' ', '+')}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token"].startswith("akr_")
    me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "testuser"


async def test_login_accepts_the_email_in_any_case(client: httpx.AsyncClient) -> None:
    await register(client)
    response = await login(client, username="  ALICE@example.com ")
    assert response.status_code == 200


async def test_token_responses_are_never_cached(client: httpx.AsyncClient) -> None:
    await register(client)
    response = await login(client)
    assert response.headers["cache-control"] == "no-store"
    refreshed = await client.post("/auth/refresh", json={"refresh_token": response.json()["refresh_token"]})
    assert refreshed.headers["cache-control"] == "no-store"


async def test_unknown_user_wrong_password_and_disabled_user_get_the_same_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, username="active")
    await register(client, username="disabled")
    await execute(
        settings.database_url, update(User).where(User.username == "disabled").values(is_active=False)
    )
    answers = [
        await login(client, username="nobody"),
        await login(client, username="active", password="wrong password entirely"),
        await login(client, username="disabled"),
    ]
    assert [answer.status_code for answer in answers] == [401, 401, 401]
    bodies = [without_request_id(answer.json()) for answer in answers]
    assert bodies[0] == bodies[1] == bodies[2]
    assert all(answer.headers["www-authenticate"] == "Bearer" for answer in answers)


async def test_an_outdated_hash_is_upgraded_on_the_next_login(
    production_password_hashing: None, client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client)
    weak = build_password_hash(memory_cost=8192, time_cost=1).hash(normalise_password(PASSWORD))
    await execute(
        settings.database_url, update(User).where(User.username == "alice").values(password_hash=weak)
    )
    assert (await login(client)).status_code == 200
    upgraded = await stored_hash(settings.database_url, "alice")
    assert upgraded != weak
    assert "m=19456,t=3,p=1" in upgraded
    assert (await login(client)).status_code == 200


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/json", '{"username": "alice", "password": "x"}'),
        ("text/plain", "username=alice&password=x"),
        (None, ""),
    ],
)
async def test_a_non_form_login_body_is_422_with_a_hint(
    client: httpx.AsyncClient, content_type: str | None, content: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/auth/login", content=content, headers=headers)
    assert response.status_code == 422
    assert "application/x-www-form-urlencoded" in response.json()["detail"]


@pytest.mark.parametrize(
    "form",
    [
        {"username": "", "password": PASSWORD},
        {"username": "alice", "password": ""},
        {"username": "alice"},
        {"username": "a" * 300, "password": PASSWORD},
        {"username": "alice", "password": PASSWORD, "grant_type": "client_credentials"},
        {"username": "alice", "password": PASSWORD, "role": "admin"},
    ],
    ids=["empty-username", "empty-password", "missing-password", "long-username", "bad-grant", "unknown"],
)
async def test_bad_login_forms_are_422(client: httpx.AsyncClient, form: dict[str, str]) -> None:
    await register(client)
    response = await client.post("/auth/login", data=form)
    assert response.status_code == 422


async def test_me_without_a_token_is_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"


class ProbingHasher(PasswordHasher):
    """The real hasher, noting how many pooled connections are out while a password is verified."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(concurrency=1)
        self.engine = engine
        self.checked_out: list[int] = []

    async def verify_and_update(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        pool = self.engine.pool
        assert isinstance(pool, QueuePool)
        self.checked_out.append(pool.checkedout())
        return await super().verify_and_update(password, password_hash)


async def test_a_login_holds_no_database_connection_while_hashing(settings: Settings) -> None:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        probe = ProbingHasher(app.state.engine)
        app.state.password_hasher.close()
        app.state.password_hasher = probe
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await register(http)
            assert (await login(http)).status_code == 200
            assert (await login(http, username="nobody")).status_code == 401
        probe.close()
    assert probe.checked_out == [0, 0]


async def test_a_malformed_multipart_login_is_a_client_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"}
    )
    assert 400 <= response.status_code < 500
