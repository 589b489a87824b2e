"""`server_toolset`, what the run engine will use: a registered server as a pydantic-ai toolset
(headers decrypted, connections guarded), narrowed to the tools named and prefixed."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from pydantic_ai import RunContext
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RunUsage

from agentkeep.mcp.catalog import McpServerDisabled
from agentkeep.mcp.connect import McpEgress
from agentkeep.mcp.service import McpServerNotFound
from agentkeep.mcp.toolsets import server_toolset
from agentkeep.rbac.permissions import Role
from agentkeep.tools.netguard import EgressAllowlist
from tests.mcp.conftest import ALLOWED, McpTestServer
from tests.mcp.helpers import body_for, register
from tests.orgs.helpers import make_team

EGRESS = McpEgress(allowlist=EgressAllowlist.parse([ALLOWED]), development=True)


def _context() -> RunContext[None]:
    return RunContext(deps=None, model=TestModel(), usage=RunUsage())


async def test_the_toolset_lists_only_the_named_tools_under_their_prefix_and_calls_them(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register(client, team.org_id, owner, body_for(calc_server))
    await register(
        client, team.org_id, owner, body_for(weather_server, "weather", path="/sse", transport="sse")
    )
    org_id = uuid.UUID(team.org_id)
    async with app.state.sessionmaker() as session:
        calc = await server_toolset(
            session, app.state.secretbox, EGRESS, org_id, "calc", tools={"add", "multiply"}, prefix="calc"
        )
        weather = await server_toolset(session, app.state.secretbox, EGRESS, org_id, "weather")
    context = _context()
    before = calc_server.stats()
    async with calc, weather:
        calc_tools = await calc.get_tools(context)
        weather_tools = await weather.get_tools(context)
        assert sorted(calc_tools) == ["calc_add", "calc_multiply"]
        assert sorted(weather_tools) == ["forecast"]
        assert calc_tools["calc_add"].tool_def.parameters_json_schema["required"] == ["a", "b"]
        answer = await calc.call_tool("calc_add", {"a": 2, "b": 40}, context, calc_tools["calc_add"])
    assert answer == 42
    after = calc_server.stats()
    assert after["call:add"] == before.get("call:add", 0) + 1
    assert after["requests_with_header"] > before.get("requests_with_header", 0)


async def test_an_unknown_or_disabled_server_is_refused_before_connecting(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    await register(client, team.org_id, team.headers(Role.OWNER), body_for(calc_server, enabled=False))
    org_id = uuid.UUID(team.org_id)
    before = calc_server.stats()
    async with app.state.sessionmaker() as session:
        with pytest.raises(McpServerNotFound):
            await server_toolset(session, app.state.secretbox, EGRESS, org_id, "nope")
        with pytest.raises(McpServerDisabled):
            await server_toolset(session, app.state.secretbox, EGRESS, org_id, "calc")
        with pytest.raises(McpServerNotFound):
            await server_toolset(session, app.state.secretbox, EGRESS, uuid.uuid4(), "calc")
    assert calc_server.stats() == before
