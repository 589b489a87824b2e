"""Who may do what to agents: roles and API-key scopes, and nothing across organizations."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.agents.helpers import AGENTS, agent_body, create_agent, owner, versions
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import create_key, key_header, make_team


async def test_readers_read_and_only_writers_change(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    agent = await create_agent(client, team.headers(Role.MEMBER), name="team agent")
    path = f"{AGENTS}/{agent['id']}"
    for role in (Role.VIEWER, Role.AUDITOR):
        headers = team.headers(role)
        assert (await client.get(AGENTS, headers=headers)).json()["items"][0]["id"] == agent["id"]
        assert (await client.get(path, headers=headers)).status_code == 200
        assert (await client.get(f"{path}/versions", headers=headers)).status_code == 200
        for method, url, body in (
            ("POST", AGENTS, agent_body(name=f"by {role.value}")),
            ("PATCH", path, {"description": role.value}),
            ("DELETE", path, None),
        ):
            denied = await client.request(method, url, json=body, headers=headers)
            assert denied.status_code == 403, (role, method)
            assert "agents:write" in denied.json()["detail"]
    for role in (Role.OWNER, Role.ADMIN, Role.MEMBER):
        changed = await client.patch(path, json={"description": role.value}, headers=team.headers(role))
        assert changed.status_code == 200, role
    assert [item["version"] for item in await versions(client, team.headers(Role.VIEWER), agent["id"])] == [
        4,
        3,
        2,
        1,
    ]
    denials = await audit_rows(app, "permission_denied")
    assert {row.details["permission"] for row in denials} == {"agents:write"}


async def test_an_api_key_acts_within_its_scopes(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers)
    reader = key_header(await create_key(client, headers, ["agents:read"]))
    assert (await client.get(f"{AGENTS}/{agent['id']}", headers=reader)).status_code == 200
    assert (await client.post(AGENTS, json=agent_body(name="k"), headers=reader)).status_code == 403
    assert (await client.delete(f"{AGENTS}/{agent['id']}", headers=reader)).status_code == 403
    unrelated = key_header(await create_key(client, headers, ["members:read"]))
    assert (await client.get(AGENTS, headers=unrelated)).status_code == 403
    assert (await client.get(AGENTS)).status_code == 401


async def test_another_organizations_agents_are_404_and_unchanged(client: httpx.AsyncClient) -> None:
    alice, bob = await owner(client, "alice"), await owner(client, "bob")
    theirs = await create_agent(client, bob, name="bob's agent", description="private")
    path = f"{AGENTS}/{theirs['id']}"
    for method, url, body in (
        ("GET", path, None),
        ("GET", f"{path}/versions", None),
        ("PATCH", path, {"description": "mine now"}),
        ("DELETE", path, None),
    ):
        response = await client.request(method, url, json=body, headers=alice)
        assert response.status_code == 404, (method, url)
        assert "bob" not in response.text
        assert "private" not in response.text
    assert (await client.get(AGENTS, headers=alice)).json()["items"] == []
    assert (await client.get(AGENTS, params={"name": "bob's agent"}, headers=alice)).json()["items"] == []
    # Bob's name does not clash with Alice's agents, and his agent is untouched.
    await create_agent(client, alice, name="bob's agent")
    unchanged = (await client.get(path, headers=bob)).json()
    assert (unchanged["version"], unchanged["description"]) == (1, "private")
