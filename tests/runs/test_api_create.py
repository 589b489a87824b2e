"""POST /api/agents/{id}/runs: 202 with the run, validation, refusals, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from agentkeep.rbac.permissions import Role
from agentkeep.runs.models import Run, RunEvent
from tests.orgs.helpers import create_key, key_header, make_team
from tests.runs.seeding import audit_rows, seed_agent, start_run


async def _count(app: FastAPI, model: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_run_is_accepted_with_its_location_first_event_and_audit_record(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id, version=3)
    response = await start_run(client, agent_id, team.headers(Role.MEMBER))
    assert response.status_code == 202, response.text
    run = response.json()
    assert response.headers["location"] == f"/api/runs/{run['id']}"
    assert "idempotent-replayed" not in response.headers
    assert run["status"] == "queued"
    assert run["stop_reason"] is None
    assert (run["agent_id"], run["agent_version"], run["org_id"]) == (agent_id, 3, team.org_id)
    assert run["input"] == "What is 6*7?"
    assert run["usage"] == {"requests": 0, "input_tokens": 0, "output_tokens": 0}
    assert run["output"] is None
    assert run["finished_at"] is None
    assert run["cancel_requested_at"] is None
    fetched = await client.get(f"/api/runs/{run['id']}", headers=team.headers(Role.VIEWER))
    assert fetched.status_code == 200
    assert fetched.json()["id"] == run["id"]
    async with app.state.sessionmaker() as session:
        stored = await session.get(Run, uuid.UUID(run["id"]))
        first = await session.get(RunEvent, (uuid.UUID(run["id"]), 1))
    assert stored is not None
    assert str(stored.created_by) == team.user_ids[Role.MEMBER]
    assert stored.api_key_id is None
    assert first is not None
    assert (first.kind, first.data) == ("status", {"status": "queued"})
    (record,) = await audit_rows(app, "run_created")
    assert (record.resource_type, record.resource_id) == ("run", run["id"])
    assert record.details == {"agent_id": agent_id, "agent_version": 3}
    assert str(record.user_id) == team.user_ids[Role.MEMBER]
    assert str(record.org_id) == team.org_id


async def test_a_run_started_with_an_api_key_records_the_key(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    key = await create_key(client, team.headers(Role.ADMIN), ["runs:create"])
    response = await start_run(client, agent_id, key_header(key))
    assert response.status_code == 202, response.text
    async with app.state.sessionmaker() as session:
        stored = await session.get(Run, uuid.UUID(response.json()["id"]))
    assert stored is not None
    assert str(stored.api_key_id) == key["id"]
    (record,) = await audit_rows(app, "run_created")
    assert record.actor_type == "api_key"


async def test_bad_bodies_are_422_and_write_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    path, headers = f"/api/agents/{agent_id}/runs", team.headers(Role.MEMBER)
    for body in ({}, {"input": ""}, {"input": "x" * 100_001}, {"input": "hi", "model": "gpt"}, {"input": 5}):
        response = await client.post(path, json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.post(path, content=b"not json", headers=headers)).status_code == 422
    assert (
        await client.post("/api/agents/not-a-uuid/runs", json={"input": "hi"}, headers=headers)
    ).status_code == 422
    assert (await start_run(client, agent_id, headers, "x" * 100_000)).status_code == 202
    assert await _count(app, Run) == 1


async def test_unknown_foreign_and_archived_agents_are_404_and_a_disabled_one_409(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    other = await make_team(client, slug="globex", owner="gloria")
    headers = team.headers(Role.MEMBER)
    foreign = await seed_agent(app, other.org_id)
    archived = await seed_agent(app, team.org_id, archived=True)
    for agent_id in (str(uuid.uuid4()), foreign, archived):
        response = await start_run(client, agent_id, headers)
        assert response.status_code == 404, agent_id
        assert response.json()["type"] == "urn:agentkeep:problem:not-found"
    disabled = await seed_agent(app, team.org_id, "off", status="disabled")
    refused = await start_run(client, disabled, headers)
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:agentkeep:problem:agent-disabled"
    assert await _count(app, Run) == 0
    assert await _count(app, RunEvent) == 0
    assert await audit_rows(app, "run_created") == []


async def test_the_same_idempotency_key_and_body_answer_the_same_run(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    headers = {**team.headers(Role.MEMBER), "Idempotency-Key": "order-42"}
    first = await start_run(client, agent_id, headers)
    again = await start_run(client, agent_id, headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    other_body = await start_run(client, agent_id, headers, "something else")
    assert other_body.status_code == 409
    assert other_body.json()["type"] == "urn:agentkeep:problem:idempotency-key-reused"
    # Keys belong to their caller: another member's same key is a new run.
    owner = await start_run(client, agent_id, {**team.headers(Role.OWNER), "Idempotency-Key": "order-42"})
    assert owner.status_code == 202
    assert owner.json()["id"] != first.json()["id"]
    bad_key = await start_run(client, agent_id, {**team.headers(Role.MEMBER), "Idempotency-Key": "k" * 256})
    assert bad_key.status_code == 422
    assert await _count(app, Run) == 2
    assert len(await audit_rows(app, "run_created")) == 2


async def test_concurrent_requests_with_one_key_create_one_run(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    headers = {**team.headers(Role.MEMBER), "Idempotency-Key": "twin"}
    responses = await asyncio.gather(*(start_run(client, agent_id, headers) for _ in range(5)))
    assert [response.status_code for response in responses] == [202] * 5, [
        (r.json().get("id"), r.json().get("detail")) for r in responses
    ]
    assert len({response.json()["id"] for response in responses}) == 1
    assert await _count(app, Run) == 1
    assert len(await audit_rows(app, "run_created")) == 1
