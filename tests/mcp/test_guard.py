"""MCP URLs pass the same network guard as http_get: loopback and private targets are refused
unless MCP_ALLOWED_NETWORKS lists them (here: 127.0.0.1 only), checked after DNS resolution and
on every redirect hop; plain http only where the policy allows it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from agentkeep.errors import InvalidInput
from agentkeep.mcp.connect import McpEgress, McpEndpoint, guarded_client_factory
from agentkeep.mcp.router import get_mcp_egress
from agentkeep.rbac.permissions import Role
from agentkeep.tools.guarded_transport import EgressRefused
from agentkeep.tools.netguard import EgressAllowlist
from tests.mcp.conftest import McpTestServer, header_secret
from tests.mcp.helpers import body_for, register, servers_path
from tests.orgs.helpers import make_team
from tests.support.dns_server import running_dns_server
from tests.tools.local_server import LocalServer

REFUSED = "urn:agentkeep:problem:mcp-server-address-refused"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:8080/mcp",  # loopback, not the allowlisted address
        "http://10.1.2.3/mcp",
        "http://192.168.1.10/mcp",
        "http://[::1]:8080/mcp",
        "https://[fe80::1]/mcp",
    ],
)
async def test_a_private_address_not_allowlisted_is_refused_when_saved(
    client: httpx.AsyncClient, url: str
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    response = await client.post(
        servers_path(team.org_id), json={"name": "inside", "url": url}, headers=owner
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"] == REFUSED
    assert "MCP_ALLOWED_NETWORKS" in response.json()["detail"]
    assert (await client.get(servers_path(team.org_id), headers=owner)).json()["items"] == []


async def test_a_name_resolving_to_loopback_is_refused_before_any_request(
    client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    # A name is checked when connecting, after resolution, not when saved.
    body = body_for(calc_server, "local", path="/mcp")
    body["url"] = calc_server.url(host="localhost")
    created = await register(client, team.org_id, owner, body)
    before = calc_server.stats()
    response = await client.get(servers_path(team.org_id, created["id"], "/tools"), headers=owner)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == REFUSED
    assert "localhost resolves to" in response.json()["detail"]
    assert "a loopback address" in response.json()["detail"]
    assert calc_server.stats() == before


@pytest.fixture
async def resolver_for_tests(app: FastAPI) -> AsyncIterator[None]:
    """The app resolves names with a DNS server of the test's (mcp.example.test -> 127.0.0.1)."""
    async with running_dns_server({"mcp.example.test": ["127.0.0.1"]}) as (_server, resolve):
        app.dependency_overrides[get_mcp_egress] = lambda: McpEgress(
            allowlist=EgressAllowlist.parse(["127.0.0.1"]), resolve=resolve, development=True
        )
        yield
        app.dependency_overrides.pop(get_mcp_egress)


@pytest.mark.usefixtures("resolver_for_tests")
async def test_a_dns_name_answering_loopback_is_refused(
    client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    body = {"name": "rebound", "url": f"https://mcp.example.test:{calc_server.port}/mcp"}
    created = await register(client, team.org_id, owner, body)
    before = calc_server.stats()
    response = await client.get(servers_path(team.org_id, created["id"], "/tools"), headers=owner)
    assert response.status_code == 422, response.text
    assert "mcp.example.test resolves to 127.0.0.1, a loopback address" in response.json()["detail"]
    assert calc_server.stats() == before


@pytest.mark.parametrize(("path", "transport"), [("/away", "streamable-http"), ("/sse-away", "sse")])
async def test_a_redirect_to_another_address_is_not_followed(
    client: httpx.AsyncClient, calc_server: McpTestServer, path: str, transport: str
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    body = body_for(calc_server, "away", path=path, transport=transport)
    created = await register(client, team.org_id, owner, body)
    response = await client.get(servers_path(team.org_id, created["id"], "/tools"), headers=owner)
    assert response.status_code == 502, response.text
    # A bad answer, not an unreachable server: nothing tried 127.0.0.2 (where nothing listens).
    assert response.json()["type"] == "urn:agentkeep:problem:mcp-server-bad-answer"


async def test_every_redirect_hop_passes_the_guard_and_headers_stay_with_their_origin(
    server: LocalServer,
) -> None:
    """The HTTP client under the MCP client: a hop to a refused address is never made, and a
    hop to another origin goes without the configured headers."""
    egress = McpEgress(allowlist=EgressAllowlist.parse(["127.0.0.1", "localhost"]), development=True)
    secret = header_secret()
    endpoint = McpEndpoint("calc", server.url("/mcp"), "streamable-http", {"X-Api-Key": secret}, 5)
    async with guarded_client_factory(endpoint, egress)() as http:
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.2 is a loopback address"):
            await http.get(server.url("/to?u=" + server.url("/text", host="127.0.0.2")))
        assert not any(seen.path.startswith("/text") for seen in server.requests)
        arrived = await http.get(server.url("/to?u=" + server.url("/text", host="localhost")))
    assert arrived.status_code == 200
    first, second = server.requests[-2:]
    assert first.headers["x-api-key"] == secret
    assert second.path == "/text"
    assert "x-api-key" not in second.headers


def test_plain_http_only_where_the_policy_allows_it() -> None:
    production = McpEgress(allowlist=EgressAllowlist.parse(["10.0.0.0/8", "tools.internal"]))
    production.check_url("https://tools.example.com/mcp")
    production.check_url("http://tools.internal:8000/mcp")  # a host the deployment listed
    production.check_url("http://10.2.3.4/mcp")
    for url in ("http://tools.example.com/mcp", "http://127.0.0.1:8000/mcp", "http://localhost:8000/mcp"):
        with pytest.raises(InvalidInput):
            production.check_url(url)
    development = McpEgress(allowlist=EgressAllowlist.parse(["127.0.0.1"]), development=True)
    development.check_url("http://127.0.0.1:8000/mcp")
    development.check_url("http://localhost:8000/mcp")  # its address is checked when connecting
    with pytest.raises(InvalidInput):
        development.check_url("http://tools.example.com/mcp")
    with pytest.raises(InvalidInput, match="metadata"):
        McpEgress(allowlist=EgressAllowlist.parse(["169.254.0.0/16"])).check_url(
            "https://169.254.169.254/mcp"
        )
