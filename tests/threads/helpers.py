"""Requests the thread tests share."""

from __future__ import annotations

from typing import Any

import httpx

from tests.agents.helpers import create_agent

THREADS = "/api/threads"
PROBLEM_JSON = "application/problem+json"


async def create_thread(
    http: httpx.AsyncClient, headers: dict[str, str], agent_id: str, **fields: Any
) -> dict[str, Any]:
    response = await http.post(THREADS, json={"agent_id": agent_id, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def listed_ids(http: httpx.AsyncClient, headers: dict[str, str], **params: str) -> list[str]:
    """Every thread id the caller is shown, all pages walked."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await http.get(THREADS, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


async def an_agent(http: httpx.AsyncClient, headers: dict[str, str], name: str = "helper") -> str:
    return str((await create_agent(http, headers, name=name))["id"])
