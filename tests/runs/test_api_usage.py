"""GET /api/usage: a month's tokens against the budget, per agent."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from agentkeep.runs.states import RunStatus
from tests.orgs.helpers import make_team
from tests.runs.seeding import seed_agent, seed_run


async def test_usage_sums_the_month_per_agent_against_the_budget(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    other = await make_team(client, slug="globex", owner="gloria")
    alpha = await seed_agent(app, team.org_id, "alpha")
    beta = await seed_agent(app, team.org_id, "beta", archived=True)
    done = RunStatus.COMPLETED
    await seed_run(app, team.org_id, alpha, status=done, input_tokens=100, output_tokens=20)
    await seed_run(app, team.org_id, alpha, status=done, input_tokens=50, output_tokens=5)
    await seed_run(app, team.org_id, beta, status=done, input_tokens=7, output_tokens=3)
    march = datetime(2024, 3, 31, 23, 59, tzinfo=UTC)
    await seed_run(app, team.org_id, alpha, status=done, input_tokens=1000, created_at=march)
    await seed_run(app, other.org_id, await seed_agent(app, other.org_id), status=done, input_tokens=99)
    headers = team.headers(Role.VIEWER)
    now = datetime.now(UTC)
    usage = (await client.get("/api/usage", headers=headers)).json()
    assert usage["month"] == f"{now.year:04d}-{now.month:02d}"
    assert (usage["budget"], usage["used"], usage["remaining"]) == (None, 185, None)
    assert usage["agents"] == [
        {
            "agent_id": alpha,
            "agent_name": "alpha",
            "runs": 2,
            "requests": 2,
            "input_tokens": 150,
            "output_tokens": 25,
        },
        {
            "agent_id": beta,
            "agent_name": "beta",
            "runs": 1,
            "requests": 1,
            "input_tokens": 7,
            "output_tokens": 3,
        },
    ]
    budget = await client.put(
        f"/api/orgs/{team.org_id}/budget",
        json={"monthly_token_budget": 1000},
        headers=team.headers(Role.OWNER),
    )
    assert budget.status_code == 200
    old = (await client.get("/api/usage", params={"month": "2024-03"}, headers=headers)).json()
    assert (old["month"], old["budget"], old["used"], old["remaining"]) == ("2024-03", 1000, 1000, 0)
    assert [row["input_tokens"] for row in old["agents"]] == [1000]
    empty = (await client.get("/api/usage", params={"month": "2024-04"}, headers=headers)).json()
    assert (empty["used"], empty["remaining"], empty["agents"]) == (0, 1000, [])
    # The first and last months a datetime holds (docs/runs.md): empty, not refused.
    for month in ("0001-01", "9999-12"):
        edge = await client.get("/api/usage", params={"month": month}, headers=headers)
        assert edge.status_code == 200, month
        assert (edge.json()["month"], edge.json()["used"], edge.json()["agents"]) == (month, 0, [])
    # Arabic-Indic digits are digits to Python's int(), not to YYYY-MM.
    for month in (
        "2024-13",
        "2024-3",
        "24-03",
        "0000-01",
        "10000-01",
        "\u0662\u0660\u0662\u0664-03",
        "march",
    ):
        bad = await client.get("/api/usage", params={"month": month}, headers=headers)
        assert bad.status_code == 422, month
        assert bad.headers["content-type"] == "application/problem+json"
