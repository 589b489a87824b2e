"""POST /api/runs/{id}/cancel: queued at once, running by request, finished refused."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.rbac.permissions import Role
from agentkeep.runs.models import RunEvent
from agentkeep.runs.states import RunStatus
from tests.orgs.helpers import make_team
from tests.runs.seeding import audit_rows, seed_agent, seed_run


async def _events(app: FastAPI, run_id: str) -> list[tuple[int, str, dict[str, object]]]:
    async with app.state.sessionmaker() as session:
        statement = select(RunEvent).where(RunEvent.run_id == uuid.UUID(run_id)).order_by(RunEvent.seq)
        return [(event.seq, event.kind, event.data) for event in await session.scalars(statement)]


async def test_a_queued_run_is_cancelled_at_once_and_a_finished_one_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    run_id = await seed_run(app, team.org_id, agent_id, status=RunStatus.QUEUED)
    path = f"/api/runs/{run_id}/cancel"
    response = await client.post(path, headers=team.headers(Role.MEMBER))
    assert response.status_code == 202, response.text
    run = response.json()
    assert (run["status"], run["stop_reason"]) == ("cancelled", "cancelled")
    assert run["finished_at"] is not None
    assert run["cancel_requested_at"] is not None
    assert await _events(app, run_id) == [
        (1, "status", {"status": "queued"}),
        (2, "status", {"status": "cancelled", "stop_reason": "cancelled"}),
    ]
    again = await client.post(path, headers=team.headers(Role.MEMBER))
    assert again.status_code == 409
    assert again.json()["type"] == "urn:agentkeep:problem:run-finished"
    (record,) = await audit_rows(app, "run_cancelled")
    assert (record.resource_id, record.details) == (run_id, {"agent_id": agent_id, "from_status": "queued"})
    assert len(await _events(app, run_id)) == 2
    completed = await seed_run(app, team.org_id, agent_id, status=RunStatus.COMPLETED)
    assert (
        await client.post(f"/api/runs/{completed}/cancel", headers=team.headers(Role.MEMBER))
    ).status_code == 409
    assert (await client.post(path, headers=team.headers(Role.VIEWER))).status_code == 403


async def test_a_running_run_gets_a_cancellation_request_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    agent_id = await seed_agent(app, team.org_id)
    run_id = await seed_run(app, team.org_id, agent_id, status=RunStatus.RUNNING)
    path = f"/api/runs/{run_id}/cancel"
    first = await client.post(path, headers=team.headers(Role.MEMBER))
    assert first.status_code == 202
    assert first.json()["status"] == "running"
    requested_at = first.json()["cancel_requested_at"]
    assert requested_at is not None
    second = await client.post(path, headers=team.headers(Role.ADMIN))
    assert second.status_code == 202
    assert second.json()["cancel_requested_at"] == requested_at
    # The runner writes the run's events while it runs: the API appended none.
    assert await _events(app, run_id) == [(1, "status", {"status": "queued"})]
    (record,) = await audit_rows(app, "run_cancelled")
    assert record.details == {"agent_id": agent_id, "from_status": "running"}
