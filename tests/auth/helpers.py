"""Small HTTP helpers shared by the auth tests."""

from __future__ import annotations

from typing import Any

import httpx

PASSWORD = "correct horse battery staple 42"


async def register(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD, email: str | None = None
) -> httpx.Response:
    email = email or f"{username}@example.com"
    return await client.post(
        "/auth/register", json={"username": username, "email": email, "password": password}
    )


async def login(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/auth/login", data={"username": username, "password": password})


async def register_and_login(client: httpx.AsyncClient, username: str = "alice") -> dict[str, Any]:
    created = await register(client, username)
    assert created.status_code == 201, created.text
    response = await login(client, username)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in {"request_id", "instance"}}
