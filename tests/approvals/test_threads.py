"""A thread turn that pauses for approval keeps its thread busy; the thread's history gets
the turn when it really ends, whole (docs/approvals.md)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.approvals.helpers import create_agent, decide, register_servers, run_events, status_in
from tests.mcp.conftest import McpTestServer
from tests.orgs.helpers import make_team


async def test_a_paused_turn_holds_the_thread_and_its_history_is_written_when_it_ends(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    agent = await create_agent(client, owner, [{"name": "mcp:calc/add"}])
    thread = (await client.post("/api/threads", json={"agent_id": agent["id"]}, headers=owner)).json()
    turns = f"/api/threads/{thread['id']}/runs"
    first = (
        await client.post(turns, json={"input": 'mcp:calc/add {"a": 20, "b": 22}'}, headers=owner)
    ).json()
    await status_in(client, owner, first["id"], {"requires_action"})
    busy = await client.post(turns, json={"input": "next"}, headers=owner)
    assert busy.status_code == 409  # multitask `reject`: the paused turn is unfinished
    second = (
        await client.post(turns, json={"input": "#recall", "multitask": "enqueue"}, headers=owner)
    ).json()
    messages = f"/api/threads/{thread['id']}/messages"
    assert (await client.get(messages, headers=owner)).json()["items"] == []
    (call,) = [data for kind, data in await run_events(app, first["id"]) if kind == "approval_requested"]
    assert (await client.get(f"/api/runs/{second['id']}", headers=owner)).json()["status"] == "queued"
    approved = await decide(
        client, owner, first["id"], {"tool_call_id": call["tool_call_id"], "decision": "approve"}
    )
    assert approved.status_code == 200
    done = await status_in(client, owner, first["id"], {"completed", "failed"})
    assert done["output"] == "mcp__calc__add: 42"
    recalled = await status_in(client, owner, second["id"], {"completed", "failed"})
    assert recalled["output"] == 'recall: 1. mcp:calc/add {"a": 20, "b": 22}'
    history = (await client.get(messages, headers=owner)).json()["items"]
    roles = [item["role"] for item in history]
    # The first turn whole (prompt, call, result, answer), then the second.
    assert roles[:4] == ["user", "assistant", "tool", "assistant"]
    assert history[3]["content"] == "mcp__calc__add: 42"
    assert [item["run_id"] for item in history[:4]] == [first["id"]] * 4
