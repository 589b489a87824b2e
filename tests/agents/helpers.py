"""Accounts and agents for the agents API tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.auth.helpers import bearer, register_and_login

AGENTS = "/api/agents"


async def owner(http: httpx.AsyncClient, username: str = "alice") -> dict[str, str]:
    """A new user's headers, acting as owner of their personal organization."""
    tokens = await register_and_login(http, username)
    return bearer(tokens["access_token"])


def agent_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "helper", "model": "test"}
    body.update(fields)
    return body


async def create_agent(http: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await http.post(AGENTS, json=agent_body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def versions(http: httpx.AsyncClient, headers: dict[str, str], agent_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"{AGENTS}/{agent_id}/versions", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
