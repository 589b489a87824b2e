"""Run creation is limited per user (RATE_LIMIT_RUNS) and by the monthly token budget."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.audit.models import AuditLog
from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from agentkeep.runs.budget import month_start, next_month_start
from agentkeep.runs.states import RunStatus
from tests.orgs.helpers import create_key, key_header, make_team
from tests.runs.seeding import seed_agent, seed_run, start_run
from tests.support.databases import REDIS_URL


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_auth="1000/minute",
        rate_limit_runs="3/minute",
        org_monthly_token_budget=1000,
    )


async def test_run_creations_are_limited_per_user_and_per_key(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    statuses = [(await start_run(client, agent_id, team.headers(Role.MEMBER))).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    limited = await start_run(client, agent_id, team.headers(Role.MEMBER))
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["type"] == "urn:agentkeep:problem:rate-limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert '"runs";q=3;w=60' in limited.headers["ratelimit-policy"]
    # Reading is not creating; another user and an API key have their own budgets.
    assert (await client.get("/api/runs", headers=team.headers(Role.MEMBER))).status_code == 200
    assert (await start_run(client, agent_id, team.headers(Role.ADMIN))).status_code == 202
    key = await create_key(client, team.headers(Role.ADMIN), ["runs:create"])
    assert (await start_run(client, agent_id, key_header(key))).status_code == 202


async def test_a_spent_budget_refuses_runs_until_next_month(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    headers = {**team.headers(Role.MEMBER), "Idempotency-Key": "retry-me"}
    # Last month's usage does not count against this month.
    last_month = month_start(datetime.now(UTC)) - timedelta(days=1)
    await seed_run(
        app, team.org_id, agent_id, status=RunStatus.COMPLETED, input_tokens=5000, created_at=last_month
    )
    await seed_run(
        app, team.org_id, agent_id, status=RunStatus.COMPLETED, input_tokens=600, output_tokens=399
    )
    assert (await start_run(client, agent_id, team.headers(Role.MEMBER))).status_code == 202
    await seed_run(app, team.org_id, agent_id, status=RunStatus.COMPLETED, output_tokens=1)
    refused = await start_run(client, agent_id, headers)
    assert refused.status_code == 429
    body = refused.json()
    assert body["type"] == "urn:agentkeep:problem:budget-exceeded"
    now = datetime.now(UTC)
    until_next_month = (next_month_start(now) - now).total_seconds()
    assert abs(int(refused.headers["retry-after"]) - math.ceil(until_next_month)) <= 5
    assert body["retry_after"] == int(refused.headers["retry-after"])
    # The refusal left nothing behind: with a bigger budget the same key creates a new run.
    raised = await client.put(
        f"/api/orgs/{team.org_id}/budget",
        json={"monthly_token_budget": 5000},
        headers=team.headers(Role.OWNER),
    )
    assert raised.status_code == 200, raised.text
    retried = await start_run(client, agent_id, headers)
    assert retried.status_code == 202
    assert "idempotent-replayed" not in retried.headers


async def test_an_organization_budget_overrides_the_default(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    path = f"/api/orgs/{team.org_id}/budget"
    zero = await client.put(path, json={"monthly_token_budget": 0}, headers=team.headers(Role.OWNER))
    assert zero.json() == {"org_id": team.org_id, "monthly_token_budget": 0, "effective_budget": 0}
    assert (await start_run(client, agent_id, team.headers(Role.MEMBER))).status_code == 429
    cleared = await client.put(path, json={"monthly_token_budget": None}, headers=team.headers(Role.OWNER))
    assert cleared.json()["effective_budget"] == 1000
    assert (await start_run(client, agent_id, team.headers(Role.MEMBER))).status_code == 202
    for body in ({"monthly_token_budget": -1}, {}, {"monthly_token_budget": 2**63}, {"budget": 5}):
        assert (await client.put(path, json=body, headers=team.headers(Role.OWNER))).status_code == 422
    assert (
        await client.put(path, json={"monthly_token_budget": 1}, headers=team.headers(Role.ADMIN))
    ).status_code == 403
    other = await make_team(client, slug="globex", owner="gloria")
    foreign = await client.put(
        f"/api/orgs/{other.org_id}/budget", json={"monthly_token_budget": 1}, headers=team.headers(Role.OWNER)
    )
    assert foreign.status_code == 404
    async with app.state.sessionmaker() as session:
        changes = (
            await session.scalars(
                select(AuditLog).where(AuditLog.action == "budget_changed").order_by(AuditLog.timestamp)
            )
        ).all()
    assert [(row.details, row.org_id, row.status) for row in changes] == [
        ({"from": None, "to": 0}, uuid.UUID(team.org_id), "success"),
        ({"from": 0, "to": None}, uuid.UUID(team.org_id), "success"),
    ]
