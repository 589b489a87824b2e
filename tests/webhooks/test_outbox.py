"""The outbox row is written in the transaction of the change itself: with no process sending
(PostgreSQL, no worker running), a cancelled queued run leaves its `run.cancelled` delivery
pending in the log, with its job waiting in the queue."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from agentkeep.rbac.permissions import Role
from tests.agents.helpers import create_agent
from tests.orgs.helpers import make_team
from tests.webhooks.helpers import create_hook, deliveries


async def test_a_cancelled_queued_run_leaves_its_event_in_the_outbox(
    backend: str, app: FastAPI, client: httpx.AsyncClient
) -> None:
    if backend != "postgres":
        pytest.skip("on SQLite runs execute in serve at once: none stays queued")
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(
        client, team.org_id, owner, "https://hooks.example.invalid/x", events=["run.cancelled"]
    )
    agent = await create_agent(client, owner)
    run = await client.post(f"/api/agents/{agent['id']}/runs", json={"input": "hello"}, headers=owner)
    assert run.status_code == 202, run.text
    cancelled = await client.post(f"/api/runs/{run.json()['id']}/cancel", headers=owner)
    assert cancelled.json()["status"] == "cancelled"
    (delivery,) = await deliveries(client, team.org_id, owner, hook["id"])
    assert delivery["status"] == "pending"
    assert delivery["attempts"] == 0
    assert delivery["payload"]["type"] == "run.cancelled"
    assert delivery["payload"]["data"]["run_id"] == run.json()["id"]
    async with app.state.engine.connect() as connection:
        waiting = await connection.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'webhooks' "
                "AND status = 'todo' AND queueing_lock = :lock"
            ),
            {"lock": f"webhook:{delivery['id']}"},
        )
    assert waiting == 1
