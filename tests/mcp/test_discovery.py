"""Discovering a server's tools against real MCP servers: the secret header is really sent and
never shown or logged; the list is cached for every instance until refreshed; a server that is
down, slow or not MCP is a clear 502/504 problem, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.rbac.permissions import Role
from tests.mcp.conftest import McpTestServer
from tests.mcp.helpers import body_for, register, servers_path, table_text
from tests.orgs.helpers import make_team
from tests.support.scan_plugin import in_process_log_lines
from tests.support.throwaway import free_port

# What tests/mcp/mcp_server.py defines, as the MCP SDK describes Python functions.
CALC_TOOLS = {
    "add": ("Add two integers.", {"a": "integer", "b": "integer"}),
    "multiply": ("Multiply two integers.", {"a": "integer", "b": "integer"}),
    "explode": ("Always fails, with the reason given.", {"reason": "string"}),
}


def _shape(tools: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, str]]]:
    return {
        tool["name"]: (
            tool["description"],
            {name: spec["type"] for name, spec in tool["input_schema"]["properties"].items()},
        )
        for tool in tools
    }


async def _tools(
    http: httpx.AsyncClient, org_id: str, server_id: str, owner: dict[str, str], **query: str
) -> httpx.Response:
    return await http.get(servers_path(org_id, server_id, "/tools"), params=query, headers=owner)


async def test_discovery_lists_the_tools_with_the_secret_header_sent(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await register(client, team.org_id, owner, body_for(calc_server))
    before = calc_server.stats()
    response = await _tools(client, team.org_id, created["id"], owner)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert listed["server_id"] == created["id"]
    assert _shape(listed["items"]) == CALC_TOOLS
    assert {tool["name"]: sorted(tool["input_schema"]["required"]) for tool in listed["items"]} == {
        "add": ["a", "b"],
        "multiply": ["a", "b"],
        "explode": ["reason"],
    }
    after = calc_server.stats()
    assert after.get("requests_with_header", 0) > before.get("requests_with_header", 0)
    assert after.get("requests_without_header", 0) == before.get("requests_without_header", 0)
    read = await client.get(servers_path(team.org_id, created["id"]), headers=owner)
    assert read.json()["tools_discovered_at"] == listed["discovered_at"]
    # Nothing the product answered, stored or logged holds the header.
    secret = calc_server.header_value.split(" ")[-1]
    assert secret not in response.text + read.text
    assert secret not in await table_text(app, "mcp_servers") + await table_text(app, "audit_logs")
    log = "".join(in_process_log_lines())
    assert response.headers["x-request-id"] in log  # the discovery request was logged
    assert secret not in log


async def test_without_the_header_the_server_refuses_and_the_answer_says_so(
    client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await register(client, team.org_id, owner, {"name": "bare", "url": calc_server.url()})
    before = calc_server.stats()
    response = await _tools(client, team.org_id, created["id"], owner)
    assert response.status_code == 502, response.text
    problem = response.json()
    assert problem["type"] == "urn:agentkeep:problem:mcp-server-bad-answer"
    assert "'bare'" in problem["detail"]
    assert calc_server.stats().get("requests_without_header", 0) > before.get("requests_without_header", 0)


async def test_the_list_is_cached_for_every_instance_until_refreshed(
    settings: Settings, client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await register(client, team.org_id, owner, body_for(calc_server))
    first = (await _tools(client, team.org_id, created["id"], owner)).json()
    asked = calc_server.stats()
    other = create_app(settings)  # another instance on the same database
    async with LifespanManager(other) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            cached = await _tools(http, team.org_id, created["id"], owner)
    assert cached.json() == first
    assert calc_server.stats() == asked
    refreshed = await _tools(client, team.org_id, created["id"], owner, refresh="true")
    assert refreshed.status_code == 200
    assert refreshed.json()["discovered_at"] > first["discovered_at"]
    assert _shape(refreshed.json()["items"]) == CALC_TOOLS
    assert calc_server.stats()["requests_with_header"] > asked["requests_with_header"]
    # A new URL drops the cached list: it may not be that server's any more.
    moved = await client.patch(
        servers_path(team.org_id, created["id"]), json={"url": calc_server.url("/mcp/")}, headers=owner
    )
    assert moved.json()["tools_discovered_at"] is None


async def test_sse_transport_discovers_too(client: httpx.AsyncClient, weather_server: McpTestServer) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    body = body_for(weather_server, "weather", path="/sse", transport="sse")
    created = await register(client, team.org_id, owner, body)
    response = await _tools(client, team.org_id, created["id"], owner)
    assert response.status_code == 200, response.text
    assert _shape(response.json()["items"]) == {
        "forecast": ("The weather forecast for a city.", {"city": "string", "days": "integer"})
    }
    assert weather_server.stats().get("requests_with_header", 0) > 0


async def test_a_disabled_server_is_not_asked(client: httpx.AsyncClient, calc_server: McpTestServer) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await register(client, team.org_id, owner, body_for(calc_server, enabled=False))
    before = calc_server.stats()
    response = await _tools(client, team.org_id, created["id"], owner)
    assert response.status_code == 409
    assert response.json()["type"] == "urn:agentkeep:problem:mcp-server-disabled"
    assert calc_server.stats() == before


@pytest.mark.parametrize(
    ("path", "transport", "status", "problem"),
    [
        ("/garbage", "streamable-http", 502, "mcp-server-bad-answer"),
        ("/garbage", "sse", 502, "mcp-server-bad-answer"),
        ("/no-such-path", "sse", 502, "mcp-server-bad-answer"),
        ("/slow", "streamable-http", 504, "mcp-server-timeout"),
        ("/slow", "sse", 504, "mcp-server-timeout"),
    ],
)
async def test_a_server_that_is_not_mcp_or_too_slow_is_a_clear_problem(
    client: httpx.AsyncClient,
    calc_server: McpTestServer,
    path: str,
    transport: str,
    status: int,
    problem: str,
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    # The slow path never answers: the server's timeout is kept short so the case is quick.
    # The others answer at once, wrongly: a timeout with a margin for a loaded host, so the
    # answer, not the clock, decides.
    timeout = 1 if status == 504 else 20
    body = body_for(calc_server, "odd", path=path, transport=transport, timeout_seconds=timeout)
    created = await register(client, team.org_id, owner, body)
    response = await _tools(client, team.org_id, created["id"], owner)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:agentkeep:problem:{problem}"
    assert "'odd'" in response.json()["detail"]
    read = await client.get(servers_path(team.org_id, created["id"]), headers=owner)
    assert read.json()["tools_discovered_at"] is None


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_a_server_that_is_down_is_a_502(client: httpx.AsyncClient, transport: str) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    url = f"http://127.0.0.1:{free_port()}/{'sse' if transport == 'sse' else 'mcp'}"
    created = await register(client, team.org_id, owner, {"name": "down", "url": url, "transport": transport})
    response = await _tools(client, team.org_id, created["id"], owner)
    assert response.status_code == 502, response.text
    assert response.json()["type"] == "urn:agentkeep:problem:mcp-server-unreachable"
    assert "is it running?" in response.json()["detail"]
