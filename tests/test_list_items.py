"""A list shows each item exactly as the item's own read does, byte for byte. The lists read
rows straight into their response models (docs/ARCHITECTURE.md, "The hot path"); reading one
item still loads its ORM object, and so did the lists before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.audit.models import AuditLog
from agentkeep.audit.schemas import AuditLogRead
from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from agentkeep.runs.states import RunStatus
from tests.agents.helpers import create_agent, owner
from tests.audit.conftest import wait_until_sealed
from tests.orgs.helpers import make_team
from tests.runs.seeding import seed_agent, seed_run
from tests.support.databases import REDIS_URL
from tests.threads.helpers import THREADS, create_thread


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    """Teams log several users in from one address: lift the auth limit."""
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(database_url=database_url, redis_url=redis_url, rate_limit_auth="1000/minute")


def as_sent(item: dict[str, Any]) -> str:
    """A listed item in the server's own JSON form (compact, UTF-8, keys in its order)."""
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


async def listed(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await http.get(path, params={"limit": 200}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def assert_each_as_read(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], count: int
) -> None:
    items = await listed(http, path, headers)
    assert len(items) == count
    for item in items:
        single = await http.get(f"{path}/{item['id']}", headers=headers)
        assert single.status_code == 200, single.text
        assert as_sent(item) == single.text


async def test_agents(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    await create_agent(client, headers, name="plain")
    await create_agent(
        client,
        headers,
        name="agent «ünïcode» 🤖",
        description="a description",
        system_prompt="Be brief.",
        tools=[{"name": "calculator"}, {"name": "current_time"}],
        limits={"max_steps": 3, "max_context_tokens": 4096},
        status="disabled",
    )
    await assert_each_as_read(client, "/api/agents", headers, 2)


async def test_runs(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    for status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED):
        await seed_run(app, team.org_id, agent_id, status=status, input_tokens=12, output_tokens=34)
    await assert_each_as_read(client, "/api/runs", team.headers(Role.VIEWER), 4)


async def test_threads(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent_id = (await create_agent(client, headers))["id"]
    await create_thread(client, headers, agent_id)
    await create_thread(client, headers, agent_id, title="Plans", metadata={"k": [1, {"n": None}], "é": "ü"})
    await assert_each_as_read(client, THREADS, headers, 2)


async def test_audit_records(app: FastAPI, client: httpx.AsyncClient) -> None:
    """No route reads one record: each is compared with its row loaded as an ORM object."""
    team = await make_team(client)
    headers = team.headers(Role.OWNER)
    await create_agent(client, headers)
    await wait_until_sealed(app.state.sessionmaker)  # sealing changes a record: list it after
    items = await listed(client, "/api/audit-logs", headers)
    assert items
    async with app.state.sessionmaker() as session:
        for item in items:
            row = await session.scalar(select(AuditLog).where(AuditLog.id == uuid.UUID(item["id"])))
            assert as_sent(item) == AuditLogRead.model_validate(row).model_dump_json()
