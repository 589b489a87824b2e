"""The approval flow end to end over HTTP, runs executed by the in-process runner, tools on
real MCP servers that count their calls (docs/approvals.md)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.approvals.helpers import create_agent, decide, register_servers, run_events, start, status_in
from tests.mcp.conftest import McpTestServer
from tests.mcp.helpers import table_text
from tests.orgs.helpers import make_team
from tests.runs.seeding import audit_rows
from tests.support.throwaway import free_port

THREE_TOOLS = [
    {"name": "mcp:calc/add"},
    {"name": "mcp:calc/multiply", "approval": "never"},
    {"name": "mcp:weather/forecast"},
]
ASK = 'mcp:calc/add {"a": 2, "b": 3} mcp:calc/multiply {"a": 6, "b": 7} mcp:weather/forecast {"city": "Oslo"}'


def _calls(stats: dict[str, int], before: dict[str, int], tool: str) -> int:
    return stats.get(f"call:{tool}", 0) - before.get(f"call:{tool}", 0)


async def test_two_tools_of_one_server_and_one_of_another_wait_then_run_once_each(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    member = team.headers(Role.MEMBER)
    await register_servers(client, team.org_id, team.headers(Role.OWNER), calc_server, weather_server)
    agent = await create_agent(client, member, THREE_TOOLS)
    calc_before, weather_before = calc_server.stats(), weather_server.stats()
    run_id = await start(client, member, agent["id"], ASK)
    paused = await status_in(client, member, run_id, {"requires_action"})
    assert paused["finished_at"] is None
    # The call needing no approval ran; the two others wait.
    assert _calls(calc_server.stats(), calc_before, "multiply") == 1
    assert _calls(calc_server.stats(), calc_before, "add") == 0
    assert _calls(weather_server.stats(), weather_before, "forecast") == 0
    events = await run_events(app, run_id)
    requested = [data for kind, data in events if kind == "approval_requested"]
    assert [(data["tool"], data["args"]) for data in requested] == [
        ("mcp:calc/add", {"a": 2, "b": 3}),
        ("mcp:weather/forecast", {"city": "Oslo"}),
    ]
    waiting = (await client.get(f"/api/runs/{run_id}/approvals", headers=member)).json()
    assert waiting["pending"] == [data["tool_call_id"] for data in requested]
    decided = await decide(
        client,
        member,
        run_id,
        *({"tool_call_id": data["tool_call_id"], "decision": "approve"} for data in requested),
    )
    assert decided.status_code == 200, decided.text
    done = await status_in(client, member, run_id, {"completed", "failed"})
    assert done["status"] == "completed", done
    assert sorted(done["output"].splitlines()) == sorted(
        [
            "mcp__calc__add: 5",
            "mcp__calc__multiply: 42",
            "mcp__weather__forecast: Oslo: sunny for 1 day(s)",
        ]
    )
    # Each tool ran exactly once: nothing before the pause ran again.
    assert _calls(calc_server.stats(), calc_before, "add") == 1
    assert _calls(calc_server.stats(), calc_before, "multiply") == 1
    assert _calls(weather_server.stats(), weather_before, "forecast") == 1
    events = await run_events(app, run_id)
    results = {data["tool"]: data.get("result") for kind, data in events if kind == "tool_result"}
    assert results == {
        "mcp:calc/add": 5,
        "mcp:calc/multiply": 42,
        "mcp:weather/forecast": "Oslo: sunny for 1 day(s)",
    }
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses == ["queued", "running", "requires_action", "queued", "running", "completed"]
    steps = [data["step"] for kind, data in events if kind == "model_response"]
    assert steps == [1, 2]
    # Usage counts across the pause: two model requests in all.
    assert done["usage"]["requests"] == 2


async def _paused_run(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    agent_id: str,
    text: str,
    app: FastAPI,
) -> tuple[str, list[dict[str, Any]]]:
    run_id = await start(client, headers, agent_id, text)
    await status_in(client, headers, run_id, {"requires_action"})
    requested = [data for kind, data in await run_events(app, run_id) if kind == "approval_requested"]
    return run_id, requested


async def test_mixed_decisions_on_parallel_calls_the_model_reads_the_denial_and_goes_on(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    agent = await create_agent(client, owner, [{"name": "mcp:calc/add"}, {"name": "mcp:weather/forecast"}])
    before_calc, before_weather = calc_server.stats(), weather_server.stats()
    run_id, requested = await _paused_run(
        client, owner, agent["id"], 'mcp:calc/add {"a": 1, "b": 1} mcp:weather/forecast {"city": "Rome"}', app
    )
    add, forecast = (data["tool_call_id"] for data in requested)
    response = await decide(
        client,
        owner,
        run_id,
        {"tool_call_id": add, "decision": "approve"},
        {"tool_call_id": forecast, "decision": "deny", "reason": "no weather today"},
    )
    assert response.status_code == 200, response.text
    done = await status_in(client, owner, run_id, {"completed", "failed"})
    assert done["status"] == "completed", done
    assert sorted(done["output"].splitlines()) == [
        "mcp__calc__add: 2",
        "mcp__weather__forecast: denied: no weather today",
    ]
    assert _calls(calc_server.stats(), before_calc, "add") == 1
    assert _calls(weather_server.stats(), before_weather, "forecast") == 0
    events = await run_events(app, run_id)
    assert [data["tool"] for kind, data in events if kind == "tool_call"] == ["mcp:calc/add"]


async def test_a_tool_that_errors_and_a_server_that_is_down_are_tool_results_and_the_run_goes_on(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    agent = await create_agent(
        client,
        owner,
        [
            {"name": "mcp:calc/explode", "approval": "never"},
            {"name": "mcp:weather/forecast", "approval": "never"},
        ],
    )
    # The weather server goes away (its registration points at a port nobody listens on).
    servers = (await client.get(f"/api/orgs/{team.org_id}/mcp-servers", headers=owner)).json()["items"]
    weather = next(server for server in servers if server["name"] == "weather")
    down = f"http://127.0.0.1:{free_port()}/sse"
    moved = await client.patch(
        f"/api/orgs/{team.org_id}/mcp-servers/{weather['id']}",
        json={"url": down, "headers": {weather_server.header_name: weather_server.header_value}},
        headers=owner,
    )
    assert moved.status_code == 200, moved.text
    before = calc_server.stats()
    run_id = await start(
        client,
        owner,
        agent["id"],
        'mcp:calc/explode {"reason": "boom"} mcp:weather/forecast {"city": "Oslo"}',
    )
    done = await status_in(client, owner, run_id, {"completed", "failed"})
    assert done["status"] == "completed", done
    lines = sorted(done["output"].splitlines())
    # The mcp SDK's server answers a tool's exception as an error result naming the tool.
    assert lines[0] == "mcp__calc__explode: error: Error executing tool explode"
    assert lines[1].startswith("mcp__weather__forecast: error: ")
    assert "could not reach MCP server 'weather'" in lines[1]
    errors = {
        data["tool"]: data.get("error")
        for kind, data in await run_events(app, run_id)
        if kind == "tool_result"
    }
    assert errors["mcp:calc/explode"] == "Error executing tool explode"
    assert "could not reach" in str(errors["mcp:weather/forecast"])
    assert _calls(calc_server.stats(), before, "explode") == 1


async def test_the_header_secret_is_in_no_event_answer_or_audit_record(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    agent = await create_agent(client, owner, [{"name": "mcp:calc/add"}, {"name": "mcp:weather/forecast"}])
    run_id, requested = await _paused_run(
        client, owner, agent["id"], 'mcp:calc/add {"a": 3, "b": 4} mcp:weather/forecast {"city": "Lima"}', app
    )
    answers = [(await client.get(f"/api/runs/{run_id}/approvals", headers=owner)).text]
    answers.append(
        (
            await decide(
                client,
                owner,
                run_id,
                *({"tool_call_id": data["tool_call_id"], "decision": "approve"} for data in requested),
            )
        ).text
    )
    await status_in(client, owner, run_id, {"completed"})
    answers.append((await client.get(f"/api/runs/{run_id}", headers=owner)).text)
    answers.append((await client.get("/api/audit-logs?limit=200", headers=owner)).text)
    stored = "".join(
        [
            await table_text(app, "run_events"),
            await table_text(app, "run_approvals"),
            await table_text(app, "audit_logs"),
        ]
    )
    for secret in (calc_server.header_value, weather_server.header_value):
        token = secret.removeprefix("Bearer ")
        assert all(token not in answer for answer in answers)
        assert token not in stored
    # The servers did get them: the calls went through.
    assert calc_server.stats()["requests_with_header"] > 0


async def test_a_paused_run_expires_at_its_deadline(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    agent = await create_agent(client, owner, [{"name": "mcp:calc/add"}], approval_timeout_seconds=10)
    before = calc_server.stats()
    run_id, requested = await _paused_run(client, owner, agent["id"], 'mcp:calc/add {"a": 1, "b": 2}', app)
    (call,) = requested
    assert call["deadline"]
    # The recovery sweep of the in-process runner ends it within seconds of the deadline.
    expired = await status_in(client, owner, run_id, {"expired"}, within=60)
    assert expired["stop_reason"] == "expired"
    assert expired["finished_at"] is not None
    late = await decide(client, owner, run_id, {"tool_call_id": call["tool_call_id"], "decision": "approve"})
    assert late.status_code == 409
    assert _calls(calc_server.stats(), before, "add") == 0
    events = await run_events(app, run_id)
    assert events[-1] == ("status", {"status": "expired", "stop_reason": "expired"})
    (record,) = await audit_rows(app, "approval_expired")
    assert str(record.resource_id) == run_id
    assert record.details["pending"] == [{"tool": "mcp:calc/add", "tool_call_id": call["tool_call_id"]}]
    assert (await client.get(f"/api/runs/{run_id}/approvals", headers=owner)).json()["state"] == "expired"


async def test_cancelling_a_paused_run_ends_it_at_once_and_nothing_runs(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    agent = await create_agent(client, owner, [{"name": "mcp:calc/add"}])
    before = calc_server.stats()
    run_id, requested = await _paused_run(client, owner, agent["id"], 'mcp:calc/add {"a": 1, "b": 2}', app)
    cancelled = await client.post(f"/api/runs/{run_id}/cancel", headers=owner)
    assert cancelled.status_code == 202, cancelled.text
    # At once: no runner holds a paused run, the request itself ends it.
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["stop_reason"] == "cancelled"
    late = await decide(
        client, owner, run_id, {"tool_call_id": requested[0]["tool_call_id"], "decision": "approve"}
    )
    assert late.status_code == 409
    assert _calls(calc_server.stats(), before, "add") == 0
    (record,) = [row for row in await audit_rows(app, "run_cancelled") if str(row.resource_id) == run_id]
    assert record.details["from_status"] == "requires_action"
