"""GET /api/runs (filters, cursor pages), GET /api/runs/{id}, and tenant isolation."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from agentkeep.runs.states import RunStatus
from tests.orgs.helpers import make_team
from tests.runs.seeding import seed_agent, seed_run


async def test_runs_are_listed_newest_first_in_pages_with_filters(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    first, second = await seed_agent(app, team.org_id, "first"), await seed_agent(app, team.org_id, "second")
    statuses = [
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.RUNNING,
        RunStatus.COMPLETED,
        RunStatus.QUEUED,
    ]
    ids = [
        await seed_run(app, team.org_id, first if index % 2 == 0 else second, status=status)
        for index, status in enumerate(statuses)
    ]
    headers = team.headers(Role.VIEWER)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/runs", params=params, headers=headers)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    by_agent = (await client.get("/api/runs", params={"agent_id": second}, headers=headers)).json()
    assert [item["id"] for item in by_agent["items"]] == [ids[3], ids[1]]
    completed = (await client.get("/api/runs", params={"status": "completed"}, headers=headers)).json()
    assert [item["id"] for item in completed["items"]] == [ids[3], ids[0]]
    both = await client.get("/api/runs", params={"status": "completed", "agent_id": first}, headers=headers)
    assert [item["id"] for item in both.json()["items"]] == [ids[0]]
    invalid: list[dict[str, str | int]] = [
        {"status": "done"},
        {"limit": 0},
        {"limit": 201},
        {"cursor": "garbage"},
        {"agent_id": "x"},
    ]
    for params in invalid:
        bad = await client.get("/api/runs", params=params, headers=headers)
        assert bad.status_code == 422, params
        assert bad.headers["content-type"] == "application/problem+json"


async def test_every_run_route_answers_404_for_another_organizations_run(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    other = await make_team(client, slug="globex", owner="gloria")
    agent_id = await seed_agent(app, other.org_id)
    run_id = await seed_run(app, other.org_id, agent_id, status=RunStatus.QUEUED)
    headers = team.headers(Role.OWNER)
    for method, path in (
        ("GET", f"/api/runs/{run_id}"),
        ("POST", f"/api/runs/{run_id}/cancel"),
        ("GET", f"/api/runs/{run_id}/events"),
        ("POST", f"/api/agents/{agent_id}/runs"),
        ("GET", f"/api/runs/{uuid.uuid4()}"),
    ):
        response = await client.request(method, path, headers=headers, json={"input": "hi"})
        assert response.status_code == 404, path
        assert response.json()["type"] == "urn:agentkeep:problem:not-found"
    assert (await client.get("/api/runs", headers=headers)).json()["items"] == []
    assert (await client.get("/api/runs", params={"agent_id": agent_id}, headers=headers)).json()[
        "items"
    ] == []
    # Untouched: still queued for its owner.
    mine = await client.get(f"/api/runs/{run_id}", headers=other.headers(Role.VIEWER))
    assert mine.json()["status"] == "queued"
