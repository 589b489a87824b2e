"""POST /api/runs/{id}/approvals on runs paused as a runner leaves them: partial decisions, a
call decided once (409), unknown calls (422), who may decide (403, audited), audit records."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.approvals.helpers import create_agent, decide, run_events, status_in
from tests.approvals.seeding import seed_paused_run
from tests.orgs.helpers import create_key, key_header, make_team
from tests.runs.seeding import audit_rows

TWO_CALLS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("call_a", "calculator", {"expression": "2+2"}),
    ("call_b", "current_time", {}),
)
CALCULATOR = [{"name": "calculator", "approval": "always"}, {"name": "current_time", "approval": "always"}]


async def test_partial_decisions_wait_and_the_last_one_resumes_the_run(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    member = team.headers(Role.MEMBER)
    agent = await create_agent(client, member, CALCULATOR)
    run_id = await seed_paused_run(app, team.org_id, agent["id"], TWO_CALLS)
    waiting = (await client.get(f"/api/runs/{run_id}/approvals", headers=member)).json()
    assert waiting["state"] == "waiting"
    assert waiting["pending"] == ["call_a", "call_b"]
    assert waiting["deadline"] is not None
    first = await decide(client, member, run_id, {"tool_call_id": "call_a", "decision": "approve"})
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "waiting"
    assert first.json()["pending"] == ["call_b"]
    assert (await client.get(f"/api/runs/{run_id}", headers=member)).json()["status"] == "requires_action"
    second = await decide(
        client, member, run_id, {"tool_call_id": "call_b", "decision": "deny", "reason": "not now"}
    )
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["state"] == "decided"
    assert body["pending"] == []
    decided = {call["tool_call_id"]: call for call in body["calls"]}
    assert decided["call_a"]["decision"] == "approve"
    assert decided["call_b"]["decision"] == "deny"
    assert decided["call_b"]["reason"] == "not now"
    assert decided["call_b"]["decided_by"] == team.user_ids[Role.MEMBER]
    # Back to the queue, then a runner takes it.
    await status_in(client, member, run_id, {"queued", "running", "completed", "failed"})
    kinds = [(kind, data.get("tool_call_id")) for kind, data in await run_events(app, run_id)]
    assert ("approval_decided", "call_a") in kinds
    assert ("approval_decided", "call_b") in kinds
    approved = await audit_rows(app, "tool_call_approved")
    denied = await audit_rows(app, "tool_call_denied")
    assert [(row.resource_id, row.details["tool_call_id"]) for row in approved] == [(run_id, "call_a")]
    assert [(row.details["tool"], row.details["reason"]) for row in denied] == [("current_time", "not now")]
    assert str(denied[0].user_id) == team.user_ids[Role.MEMBER]


async def test_a_call_is_decided_once_and_unknown_calls_are_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    agent = await create_agent(client, owner, CALCULATOR)
    run_id = await seed_paused_run(app, team.org_id, agent["id"], TWO_CALLS)
    unknown = await decide(client, owner, run_id, {"tool_call_id": "call_z", "decision": "approve"})
    assert unknown.status_code == 422
    assert unknown.json()["pending"] == ["call_a", "call_b"]
    assert (
        await decide(client, owner, run_id, {"tool_call_id": "call_a", "decision": "deny"})
    ).status_code == 200
    again = await decide(client, owner, run_id, {"tool_call_id": "call_a", "decision": "approve"})
    assert again.status_code == 409
    assert again.json()["decided"] == ["call_a"]
    # A request with one decided call changes nothing, not even the call still pending.
    mixed = await decide(
        client,
        owner,
        run_id,
        {"tool_call_id": "call_b", "decision": "approve"},
        {"tool_call_id": "call_a", "decision": "approve"},
    )
    assert mixed.status_code == 409
    state = (await client.get(f"/api/runs/{run_id}/approvals", headers=owner)).json()
    assert state["pending"] == ["call_b"]
    repeated = await decide(
        client,
        owner,
        run_id,
        {"tool_call_id": "call_b", "decision": "approve"},
        {"tool_call_id": "call_b", "decision": "deny"},
    )
    assert repeated.status_code == 422
    assert (
        await decide(client, owner, run_id, {"tool_call_id": "call_b", "decision": "approve"})
    ).status_code == 200
    # Every call decided: the run is no longer waiting.
    late = await decide(client, owner, run_id, {"tool_call_id": "call_b", "decision": "approve"})
    assert late.status_code == 409


async def test_a_run_that_never_paused_is_not_waiting(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    agent = await create_agent(client, owner, [])
    created = await client.post(f"/api/agents/{agent['id']}/runs", json={"input": "hi"}, headers=owner)
    run_id = created.json()["id"]
    await status_in(client, owner, run_id, {"completed"})
    refused = await decide(client, owner, run_id, {"tool_call_id": "call_1", "decision": "approve"})
    assert refused.status_code == 409
    assert refused.json()["run_status"] == "completed"
    assert (await client.get(f"/api/runs/{run_id}/approvals", headers=owner)).json()["state"] == "none"


async def test_only_the_agents_approvers_decide_and_refusals_are_audited(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    narrowed = await create_agent(client, owner, CALCULATOR, approvers=["owner"])
    run_id = await seed_paused_run(app, team.org_id, narrowed["id"], TWO_CALLS)
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        refused = await decide(
            client, team.headers(role), run_id, {"tool_call_id": "call_a", "decision": "approve"}
        )
        assert refused.status_code == 403, role
        assert "runs:approve" in refused.json()["detail"]
    denials = await audit_rows(app, "permission_denied")
    assert {(row.details["permission"], row.details["role"]) for row in denials} >= {
        ("runs:approve", "admin"),
        ("runs:approve", "member"),
        ("runs:approve", "viewer"),
    }
    # The default: owner, admin, member; viewers and auditors may not.
    default = await create_agent(client, owner, CALCULATOR)
    run_id = await seed_paused_run(app, team.org_id, default["id"], TWO_CALLS)
    for role in (Role.VIEWER, Role.AUDITOR):
        refused = await decide(
            client, team.headers(role), run_id, {"tool_call_id": "call_a", "decision": "approve"}
        )
        assert refused.status_code == 403, role
    # Widened: this agent's viewers may decide.
    widened = await create_agent(client, owner, CALCULATOR, approvers=["viewer"])
    run_id = await seed_paused_run(app, team.org_id, widened["id"], TWO_CALLS)
    viewer = team.headers(Role.VIEWER)
    allowed = await decide(client, viewer, run_id, {"tool_call_id": "call_a", "decision": "approve"})
    assert allowed.status_code == 200, allowed.text
    refused = await decide(client, owner, run_id, {"tool_call_id": "call_b", "decision": "approve"})
    assert refused.status_code == 403


async def test_an_api_key_decides_only_with_the_runs_approve_scope(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    agent = await create_agent(client, owner, CALCULATOR)
    run_id = await seed_paused_run(app, team.org_id, agent["id"], TWO_CALLS)
    reader = key_header(await create_key(client, owner, ["runs:read"]))
    refused = await decide(client, reader, run_id, {"tool_call_id": "call_a", "decision": "approve"})
    assert refused.status_code == 403
    key = await create_key(client, owner, ["runs:read", "runs:approve"])
    allowed = await decide(client, key_header(key), run_id, {"tool_call_id": "call_a", "decision": "approve"})
    assert allowed.status_code == 200, allowed.text
    (call,) = [call for call in allowed.json()["calls"] if call["tool_call_id"] == "call_a"]
    assert call["decided_by_key"] == key["id"]
    (record,) = await audit_rows(app, "tool_call_approved")
    assert record.details["key_id"] == key["id"]


async def test_another_organizations_run_is_not_found(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    other = await make_team(client, slug="other", owner="oscar")
    agent = await create_agent(client, team.headers(Role.OWNER), CALCULATOR)
    run_id = await seed_paused_run(app, team.org_id, agent["id"], TWO_CALLS)
    outsider = other.headers(Role.OWNER)
    assert (
        await decide(client, outsider, run_id, {"tool_call_id": "call_a", "decision": "approve"})
    ).status_code == 404
    assert (await client.get(f"/api/runs/{run_id}/approvals", headers=outsider)).status_code == 404
