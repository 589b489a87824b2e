"""Calls and raw reads the approval tests share."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.runs.models import RunEvent
from tests.mcp.conftest import McpTestServer
from tests.mcp.helpers import body_for, register


async def register_servers(
    http: httpx.AsyncClient, org_id: str, headers: dict[str, str], calc: McpTestServer, weather: McpTestServer
) -> None:
    """`calc` (add, multiply, explode) over Streamable HTTP and `weather` (forecast) over SSE."""
    await register(http, org_id, headers, body_for(calc))
    await register(http, org_id, headers, body_for(weather, "weather", path="/sse", transport="sse"))


async def create_agent(
    http: httpx.AsyncClient, headers: dict[str, str], tools: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    body = {"name": f"agent-{uuid.uuid4().hex[:8]}", "model": "test", "tools": tools, **fields}
    response = await http.post("/api/agents", json=body, headers=headers)
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def start(http: httpx.AsyncClient, headers: dict[str, str], agent_id: str, text: str) -> str:
    response = await http.post(f"/api/agents/{agent_id}/runs", json={"input": text}, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def status_in(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    run_id: str,
    statuses: set[str],
    within: float = 60,
) -> dict[str, Any]:
    """The run once its status is one of `statuses`; fails after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        run: dict[str, Any] = (await http.get(f"/api/runs/{run_id}", headers=headers)).json()
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {run['status']}, not one of {sorted(statuses)}")
        await asyncio.sleep(0.05)


async def decide(
    http: httpx.AsyncClient, headers: dict[str, str], run_id: str, *decisions: dict[str, Any]
) -> httpx.Response:
    return await http.post(
        f"/api/runs/{run_id}/approvals", json={"decisions": list(decisions)}, headers=headers
    )


async def run_events(app: FastAPI, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the run, in order, as stored."""
    async with app.state.sessionmaker() as session:
        statement = select(RunEvent).where(RunEvent.run_id == uuid.UUID(run_id)).order_by(RunEvent.seq)
        return [(event.kind, dict(event.data)) for event in (await session.scalars(statement)).all()]
