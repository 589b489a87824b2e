"""Requests the thread tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from agentkeep.config import Settings
from tests.agents.helpers import create_agent
from tests.support.databases import REDIS_URL

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


FINISHED = {"completed", "failed", "cancelled", "timed_out"}


async def say(
    http: httpx.AsyncClient, headers: dict[str, str], thread_id: str, text: str, **extra: Any
) -> dict[str, Any]:
    """Start a turn (202) and answer the run."""
    response = await http.post(f"{THREADS}/{thread_id}/runs", json={"input": text, **extra}, headers=headers)
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


async def finished(http: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    for _ in range(400):
        run: dict[str, Any] = (await http.get(f"/api/runs/{run_id}", headers=headers)).json()
        if run["status"] in FINISHED:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


async def settled(
    http: httpx.AsyncClient, headers: dict[str, str], run_id: str, within: float
) -> dict[str, Any]:
    """The run once it has finished; fails if it has not within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        run: dict[str, Any] = (await http.get(f"/api/runs/{run_id}", headers=headers)).json()
        if run["status"] in FINISHED:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is still {run['status']}")
        await asyncio.sleep(0.05)


async def messages(http: httpx.AsyncClient, headers: dict[str, str], thread_id: str) -> list[dict[str, Any]]:
    """The whole conversation, walked two messages a page."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await http.get(f"{THREADS}/{thread_id}/messages", params=params, headers=headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def thread_settings(
    make_settings: Callable[..., Settings], backend: str, database_url: str, **extra: Any
) -> Settings:
    """The thread tests' settings, with `extra` (a model endpoint, other limits) on top."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": REDIS_URL if backend == "postgres" else None,
        "rate_limit_auth": "1000/minute",
        "run_execution": "inprocess",
    }
    return make_settings(**{**values, **extra})
