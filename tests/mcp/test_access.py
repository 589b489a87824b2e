"""Only `org:manage` reaches MCP servers, only in the caller's current organization; every
denial is a 403 problem with a `permission_denied` audit record."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import ROLE_PERMISSIONS, Permission, Role
from tests.integration.conftest import audit_rows
from tests.mcp.conftest import McpTestServer
from tests.mcp.helpers import body_for, register, servers_path
from tests.orgs.helpers import create_key, key_header, make_team

DENIED = "urn:agentkeep:problem:permission-denied"


async def test_only_org_manage_may_call_any_mcp_server_route(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await register(client, team.org_id, owner, body_for(calc_server))
    one = servers_path(team.org_id, created["id"])
    calls = [
        ("GET", servers_path(team.org_id), None),
        ("POST", servers_path(team.org_id), {"name": "n", "url": "https://tools.example.com/mcp"}),
        ("GET", one, None),
        ("PATCH", one, {"enabled": False}),
        ("DELETE", one, None),
        ("GET", f"{one}/tools", None),
        ("GET", f"{one}/tools?refresh=true", None),
    ]
    every_scope_but_org_manage = [p.value for p in Permission if p is not Permission.ORG_MANAGE]
    callers = {role.value: team.headers(role) for role in Role if role is not Role.OWNER}
    callers["owner key without org:manage"] = key_header(
        await create_key(client, owner, every_scope_but_org_manage)
    )
    assert [role for role in Role if Permission.ORG_MANAGE in ROLE_PERMISSIONS[role]] == [Role.OWNER]
    before = calc_server.stats()
    for caller, headers in callers.items():
        for method, path, body in calls:
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == 403, (caller, method, path)
            assert response.json()["type"] == DENIED
    for method, path, body in calls:
        assert (await client.request(method, path, json=body)).status_code == 401
    # Nobody refused reached the MCP server, and nothing changed.
    assert calc_server.stats() == before
    assert (await client.get(one, headers=owner)).json() == created
    denials = await audit_rows(app, "permission_denied")
    denied_users = {str(row.user_id) for row in denials}
    assert {team.user_ids[Role.MEMBER], team.user_ids[Role.VIEWER], team.user_ids[Role.ADMIN]} <= denied_users
    assert all(row.details["permission"] == "org:manage" for row in denials)
    # An API key holding org:manage acts like its owner would.
    manager_key = key_header(await create_key(client, owner, ["org:manage"]))
    assert (await client.get(one, headers=manager_key)).status_code == 200
    changed = await client.patch(one, json={"timeout_seconds": 9}, headers=manager_key)
    assert changed.status_code == 200, changed.text
    updates = await audit_rows(app, "mcp_server_updated")
    assert updates[-1].actor_type == "api_key"


async def test_another_organizations_servers_answer_404(
    client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    acme = await make_team(client, "acme", "olivia")
    globex = await make_team(client, "globex", "gus")
    theirs = await register(client, acme.org_id, acme.headers(Role.OWNER), body_for(calc_server))
    mine = globex.headers(Role.OWNER)
    before = calc_server.stats()
    calls = [
        ("GET", servers_path(acme.org_id), None),
        ("POST", servers_path(acme.org_id), {"name": "x", "url": "https://tools.example.com/mcp"}),
        ("GET", servers_path(acme.org_id, theirs["id"]), None),
        ("PATCH", servers_path(acme.org_id, theirs["id"]), {"enabled": False}),
        ("DELETE", servers_path(acme.org_id, theirs["id"]), None),
        ("GET", servers_path(acme.org_id, theirs["id"], "/tools"), None),
        # The right organization in the path, another organization's server id.
        ("GET", servers_path(globex.org_id, theirs["id"]), None),
        ("PATCH", servers_path(globex.org_id, theirs["id"]), {"enabled": False}),
        ("DELETE", servers_path(globex.org_id, theirs["id"]), None),
        ("GET", servers_path(globex.org_id, theirs["id"], "/tools?refresh=true"), None),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body, headers=mine)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["title"] in {"Organization not found", "MCP server not found"}
    assert calc_server.stats() == before
    unchanged = await client.get(servers_path(acme.org_id, theirs["id"]), headers=acme.headers(Role.OWNER))
    assert unchanged.json() == theirs
