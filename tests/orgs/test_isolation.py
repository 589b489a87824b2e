"""Tenant isolation and mass assignment: another organization's ids answer 404 with no data,
and bodies carrying fields they should not (org_id, role, owner, is_superuser) change nothing."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from agentkeep.rbac.dependencies import api_routes
from agentkeep.rbac.permissions import Role
from agentkeep.runs.states import RunStatus
from tests.auth.helpers import bearer
from tests.orgs.helpers import Team, create_key, fill_path, key_header, make_team
from tests.runs.seeding import seed_run

# A valid body per object route that takes one, so the request reaches the organization check.
SAMPLE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/orgs/{org_id}/members"): {"user": "olivia", "role": "viewer"},
    ("PATCH", "/api/orgs/{org_id}/members/{user_id}"): {"role": "viewer"},
    ("PUT", "/api/orgs/{org_id}/budget"): {"monthly_token_budget": 0},
    ("POST", "/api/agents/{agent_id}/runs"): {"input": "hello"},
    ("POST", "/api/runs/{run_id}/cancel"): {},
    ("POST", "/api/runs/{run_id}/approvals"): {
        "decisions": [{"tool_call_id": "call-1", "decision": "approve"}]
    },
    ("POST", "/api/orgs/{org_id}/providers"): {
        "name": "default",
        "base_url": "https://models.example.com/v1",
        "api_key": "placeholder-key",
    },
    ("PATCH", "/api/orgs/{org_id}/providers/{provider_id}"): {"api_key": "placeholder-key"},
    ("PATCH", "/api/agents/{agent_id}"): {"description": "taken over"},
    ("PATCH", "/api/threads/{thread_id}"): {"title": "taken over"},
    ("POST", "/api/threads/{thread_id}/runs"): {"input": "taken over"},
    ("POST", "/api/orgs/{org_id}/mcp-servers"): {"name": "tools", "url": "https://tools.example.com/mcp"},
    ("PATCH", "/api/orgs/{org_id}/mcp-servers/{server_id}"): {"enabled": False},
    ("POST", "/api/orgs/{org_id}/webhooks"): {"url": "https://hooks.example.com/x", "events": ["run.failed"]},
    ("PATCH", "/api/orgs/{org_id}/webhooks/{webhook_id}"): {"enabled": True},
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/rotate-secret"): {},
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/ping"): {},
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): {},
}
# Their webhook: disabled, and on a name that never resolves (RFC 6761 .invalid), so their
# ping is the only delivery and it reaches no one.
THEIR_WEBHOOK = {"url": "https://hooks.example.invalid/theirs", "events": ["agent.updated"], "enabled": False}


async def _members(http: httpx.AsyncClient, team: Team) -> list[dict[str, Any]]:
    response = await http.get(f"/api/orgs/{team.org_id}/members", headers=team.headers(Role.OWNER))
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_every_object_route_answers_404_for_another_organizations_ids(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ours = await make_team(client, "ours", owner="olivia")
    theirs = await make_team(client, "theirs", owner="theo")
    their_key = await create_key(client, theirs.headers(Role.OWNER), ["members:read"])
    their_agent = await client.post(
        "/api/agents", json={"name": "their agent", "model": "test"}, headers=theirs.headers(Role.OWNER)
    )
    assert their_agent.status_code == 201, their_agent.text
    their_thread = await client.post(
        "/api/threads",
        json={"agent_id": their_agent.json()["id"], "title": "their thread"},
        headers=theirs.headers(Role.OWNER),
    )
    assert their_thread.status_code == 201, their_thread.text
    their_server = await client.post(
        f"/api/orgs/{theirs.org_id}/mcp-servers",
        json={"name": "their-tools", "url": "https://tools.example.com/mcp"},
        headers=theirs.headers(Role.OWNER),
    )
    assert their_server.status_code == 201, their_server.text
    their_hook = await client.post(
        f"/api/orgs/{theirs.org_id}/webhooks", json=THEIR_WEBHOOK, headers=theirs.headers(Role.OWNER)
    )
    assert their_hook.status_code == 201, their_hook.text
    their_ping = await client.post(
        f"/api/orgs/{theirs.org_id}/webhooks/{their_hook.json()['id']}/ping",
        headers=theirs.headers(Role.OWNER),
    )
    assert their_ping.status_code == 202, their_ping.text
    their_ids = {
        "org_id": theirs.org_id,
        "user_id": theirs.user_ids[Role.MEMBER],
        "key_id": their_key["id"],
        "agent_id": their_agent.json()["id"],
        "run_id": await seed_run(app, theirs.org_id, their_agent.json()["id"], status=RunStatus.QUEUED),
        "thread_id": their_thread.json()["id"],
        "server_id": their_server.json()["id"],
        "webhook_id": their_hook.json()["id"],
        "delivery_id": their_ping.json()["id"],
    }
    before = await _members(client, theirs)
    routes, _ = api_routes(app)
    object_routes = [route for route in routes if "{" in route.path and route.access[0].kind == "permission"]
    assert len(object_routes) >= 4
    for route in object_routes:
        path = fill_path(route.path, their_ids)
        for method in route.methods - {"HEAD"}:
            body = SAMPLE_BODIES.get((method, route.path))
            if method in {"POST", "PATCH", "PUT"}:
                assert body is not None, f"add a sample body for {method} {route.path}"
            response = await client.request(method, path, json=body, headers=ours.headers(Role.OWNER))
            assert response.status_code == 404, (method, route.path, response.text)
            for secret in ("theirs", "Theirs", "theo", "their agent", theirs.users[Role.MEMBER]):
                assert secret not in response.text
    assert await _members(client, theirs) == before
    still = await client.get(f"/api/agents/{their_ids['agent_id']}", headers=theirs.headers(Role.OWNER))
    assert still.status_code == 200
    assert (still.json()["version"], still.json()["description"]) == (1, "")
    server = await client.get(
        f"/api/orgs/{theirs.org_id}/mcp-servers/{their_ids['server_id']}", headers=theirs.headers(Role.OWNER)
    )
    assert server.status_code == 200
    assert (server.json()["name"], server.json()["enabled"]) == ("their-tools", True)
    hook = await client.get(
        f"/api/orgs/{theirs.org_id}/webhooks/{their_ids['webhook_id']}", headers=theirs.headers(Role.OWNER)
    )
    assert (hook.status_code, hook.json()["version"], hook.json()["enabled"]) == (200, 1, False)
    thread = await client.get(f"/api/threads/{their_ids['thread_id']}", headers=theirs.headers(Role.OWNER))
    assert thread.status_code == 200
    assert thread.json()["title"] == "their thread"
    # No turn was started in it: no run of the thread, no message.
    their_turns = await client.get(
        "/api/runs", params={"thread_id": their_ids["thread_id"]}, headers=theirs.headers(Role.OWNER)
    )
    assert their_turns.status_code == 200
    assert their_turns.json()["items"] == []
    conversation = await client.get(
        f"/api/threads/{their_ids['thread_id']}/messages", headers=theirs.headers(Role.OWNER)
    )
    assert conversation.status_code == 200
    assert conversation.json()["items"] == []
    assert (
        await client.get(f"/api/orgs/{theirs.org_id}/members", headers=key_header(their_key))
    ).status_code == 200


async def test_mass_assignment_is_refused_and_changes_nothing(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner, admin = team.headers(Role.OWNER), team.headers(Role.ADMIN)
    members_path = f"/api/orgs/{team.org_id}/members"
    before = await _members(client, team)
    attempts = [
        ("POST", "/api/orgs", {"name": "X", "slug": "xorg", "is_personal": True}, owner),
        ("POST", "/api/orgs", {"name": "X", "slug": "xorg", "owner_id": team.user_ids[Role.VIEWER]}, owner),
        ("POST", "/api/orgs", {"name": "X", "slug": "xorg", "id": team.org_id}, owner),
        ("POST", members_path, {"user": "nobody", "role": "viewer", "org_id": team.org_id}, admin),
        ("POST", members_path, {"user": "nobody", "role": "viewer", "is_superuser": True}, admin),
        (
            "PATCH",
            f"{members_path}/{team.user_ids[Role.VIEWER]}",
            {"role": "viewer", "is_superuser": True},
            admin,
        ),
        ("PATCH", f"{members_path}/{team.user_ids[Role.VIEWER]}", {"role": "viewer", "user_id": "x"}, admin),
        ("PATCH", f"{members_path}/{team.user_ids[Role.VIEWER]}", {"role": "superowner"}, admin),
        ("POST", "/auth/switch-org", {"org": team.slug, "role": "owner"}, admin),
    ]
    for method, path, body, headers in attempts:
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 422, (path, body, response.text)
    registered = await client.post(
        "/auth/register",
        json={"username": "eve", "email": "eve@example.com", "password": "x" * 20, "is_superuser": True},
    )
    assert registered.status_code == 422
    assert await _members(client, team) == before
    orgs = (await client.get("/api/orgs", headers=owner)).json()["items"]
    assert [org["slug"] for org in orgs] == ["~olivia", "acme"]
    me = await client.get("/auth/me", headers=bearer(team.tokens[Role.ADMIN]))
    assert me.json()["is_superuser"] is False
