"""Agents name MCP tools one by one, `mcp:<server>/<tool>`, each checked against the server's
discovered tools when the agent is saved; every tool has an approval policy (docs/approvals.md)."""

from __future__ import annotations

from typing import Any

import httpx

from agentkeep.rbac.permissions import Role
from tests.approvals.helpers import create_agent, register_servers
from tests.mcp.conftest import McpTestServer
from tests.orgs.helpers import make_team


async def test_mcp_tools_default_to_approval_and_built_in_tools_do_not(
    client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    agent = await create_agent(
        client,
        owner,
        [
            {"name": "calculator"},
            {"name": "mcp:calc/add"},
            {"name": "mcp:calc/multiply", "approval": "never"},
            {"name": "mcp:weather/forecast"},
            {"name": "current_time", "approval": "always"},
        ],
    )
    policies = {tool["name"]: tool["approval"] for tool in agent["tools"]}
    assert policies == {
        "calculator": "never",
        "mcp:calc/add": "always",
        "mcp:calc/multiply": "never",
        "mcp:weather/forecast": "always",
        "current_time": "always",
    }
    versions = (await client.get(f"/api/agents/{agent['id']}/versions", headers=owner)).json()["items"]
    assert versions[0]["config"]["tools"] == agent["tools"]


async def test_an_unknown_server_or_tool_is_refused_with_what_is_available(
    client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    body = {"name": "a", "model": "test", "tools": [{"name": "mcp:nope/add"}]}
    unknown_server = await client.post("/api/agents", json=body, headers=owner)
    assert unknown_server.status_code == 422
    assert unknown_server.json()["available"] == ["calc", "weather"]
    body["tools"] = [{"name": "mcp:calc/subtract"}]
    unknown_tool = await client.post("/api/agents", json=body, headers=owner)
    assert unknown_tool.status_code == 422
    problem = unknown_tool.json()
    assert problem["available"] == ["add", "explode", "multiply"]
    assert "subtract" in problem["detail"]
    agent = await create_agent(client, owner, [{"name": "calculator"}])
    patched = await client.patch(
        f"/api/agents/{agent['id']}", json={"tools": [{"name": "mcp:weather/rain"}]}, headers=owner
    )
    assert patched.status_code == 422
    assert patched.json()["available"] == ["forecast"]
    # Nothing was written by the refusals.
    assert (await client.get(f"/api/agents/{agent['id']}", headers=owner)).json()["version"] == 1


async def test_a_disabled_server_and_settings_on_mcp_tools_are_refused(
    client: httpx.AsyncClient, calc_server: McpTestServer, weather_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await register_servers(client, team.org_id, owner, calc_server, weather_server)
    servers = (await client.get(f"/api/orgs/{team.org_id}/mcp-servers", headers=owner)).json()["items"]
    weather = next(server for server in servers if server["name"] == "weather")
    disabled = await client.patch(
        f"/api/orgs/{team.org_id}/mcp-servers/{weather['id']}", json={"enabled": False}, headers=owner
    )
    assert disabled.status_code == 200, disabled.text
    body = {"name": "a", "model": "test", "tools": [{"name": "mcp:weather/forecast"}]}
    refused = await client.post("/api/agents", json=body, headers=owner)
    assert refused.status_code == 422
    assert "disabled" in refused.json()["detail"]
    body["tools"] = [{"name": "mcp:calc/add", "settings": {"x": 1}}]
    assert (await client.post("/api/agents", json=body, headers=owner)).status_code == 422
    body["tools"] = [{"name": "mcp:calc/add", "approval": "sometimes"}]
    assert (await client.post("/api/agents", json=body, headers=owner)).status_code == 422


async def test_approvers_and_the_timeout_are_bounded_and_versioned(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    agent = await create_agent(client, owner, [], approvers=["owner"], approval_timeout_seconds=60)
    assert agent["approvers"] == ["owner"]
    bad_approvers: list[dict[str, Any]] = [
        {"approvers": []},
        {"approvers": ["owner", "owner"]},
        {"approvers": ["boss"]},
    ]
    for bad in bad_approvers:
        response = await client.patch(f"/api/agents/{agent['id']}", json=bad, headers=owner)
        assert response.status_code == 422, bad
    for bad_timeout in (9, 7 * 24 * 3600 + 1, "60"):
        response = await client.patch(
            f"/api/agents/{agent['id']}", json={"approval_timeout_seconds": bad_timeout}, headers=owner
        )
        assert response.status_code == 422, bad_timeout
    changed = await client.patch(
        f"/api/agents/{agent['id']}", json={"approvers": ["admin", "viewer"]}, headers=owner
    )
    assert changed.status_code == 200
    versions = (await client.get(f"/api/agents/{agent['id']}/versions", headers=owner)).json()["items"]
    assert [version["config"]["approvers"] for version in versions] == [["admin", "viewer"], ["owner"]]
    assert versions[0]["config"]["approval_timeout_seconds"] == 60
