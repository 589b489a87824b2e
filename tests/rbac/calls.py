"""How the authorization oracle builds each operation's request.

Every call carries valid ids of the team's seeded objects and a minimal valid body, so a
caller the table allows reaches the handler and gets a success (`ok`), not a validation
error. A call that consumes its target (delete, remove, revoke, disable, cancel) gets a fresh
one when it is expected to succeed, and a spare one otherwise, so the objects other calls
read stay in place. Calls that end or move a session use a second login of the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.auth.helpers import PASSWORD
from tests.rbac.world import WEBHOOK_URL, Caller, World, provider_key

OK = frozenset({200, 201, 202, 204})
NEW_PASSWORD = "a different horse battery staple 43"


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    ok: frozenset[int] = field(default=OK)


# (world, caller, expected to succeed) -> the call.
Builder = Callable[[World, Caller, bool], Awaitable[Call]]


def _fixed(path: str, body: dict[str, Any] | None = None) -> Builder:
    """A call whose target is read, not consumed: the seeded objects' ids, the caller's headers."""

    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        return Call(path.format(**world.ids), caller.headers, json=body)

    return build


def _sso(path: str) -> Builder:
    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        return Call(path, caller.headers, ok=frozenset({404}))

    return build


async def _register(world: World, caller: Caller, allowed: bool) -> Call:
    body = {"username": world.unique("joiner"), "email": f"{world.unique('joiner')}@example.com"}
    return Call("/auth/register", caller.headers, json={**body, "password": PASSWORD})


async def _login(world: World, caller: Caller, allowed: bool) -> Call:
    form = {"username": world.spare["username"], "password": PASSWORD}
    return Call("/auth/login", caller.headers, form=form)


async def _refresh(world: World, caller: Caller, allowed: bool) -> Call:
    return Call("/auth/refresh", caller.headers, json={"refresh_token": await world.fresh_refresh_token()})


async def _logout(world: World, caller: Caller, allowed: bool) -> Call:
    return Call("/auth/logout", await world.fresh_session(caller))


async def _switch_org(world: World, caller: Caller, allowed: bool) -> Call:
    personal = f"~{caller.username or world.spare['username']}"
    return Call("/auth/switch-org", await world.fresh_session(caller), json={"org": personal})


async def _change_password(world: World, caller: Caller, allowed: bool) -> Call:
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    return Call("/auth/password", caller.headers, json=body)


async def _create_org(world: World, caller: Caller, allowed: bool) -> Call:
    slug = world.unique("team")
    return Call("/api/orgs", caller.headers, json={"name": slug, "slug": slug})


async def _add_member(world: World, caller: Caller, allowed: bool) -> Call:
    username = (await world.fresh_user())[1] if allowed else world.spare["username"]
    path = f"/api/orgs/{world.team.org_id}/members"
    return Call(path, caller.headers, json={"user": username, "role": "viewer"})


async def _member_target(world: World, allowed: bool) -> str:
    user_id = await world.fresh_member() if allowed else world.ids["member_id"]
    return f"/api/orgs/{world.team.org_id}/members/{user_id}"


async def _change_role(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(await _member_target(world, allowed), caller.headers, json={"role": "member"})


async def _remove_member(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(await _member_target(world, allowed), caller.headers)


async def _create_provider(world: World, caller: Caller, allowed: bool) -> Call:
    body = {"name": world.unique("p"), "base_url": "https://models.example.com/v1", "api_key": provider_key()}
    return Call(f"/api/orgs/{world.team.org_id}/providers", caller.headers, json=body)


async def _delete_provider(world: World, caller: Caller, allowed: bool) -> Call:
    provider_id = await world.fresh_provider() if allowed else world.ids["spare_provider_id"]
    return Call(f"/api/orgs/{world.team.org_id}/providers/{provider_id}", caller.headers)


async def _create_mcp_server(world: World, caller: Caller, allowed: bool) -> Call:
    body = {"name": world.unique("m"), "url": "https://mcp.example.com/mcp"}
    return Call(f"/api/orgs/{world.team.org_id}/mcp-servers", caller.headers, json=body)


async def _delete_mcp_server(world: World, caller: Caller, allowed: bool) -> Call:
    server_id = await world.fresh_mcp_server() if allowed else world.ids["spare_server_id"]
    return Call(f"/api/orgs/{world.team.org_id}/mcp-servers/{server_id}", caller.headers)


async def _create_webhook(world: World, caller: Caller, allowed: bool) -> Call:
    body = {"url": WEBHOOK_URL, "events": ["run.completed"]}
    return Call(f"/api/orgs/{world.team.org_id}/webhooks", caller.headers, json=body)


async def _delete_webhook(world: World, caller: Caller, allowed: bool) -> Call:
    webhook_id = await world.fresh_webhook() if allowed else world.ids["spare_webhook_id"]
    return Call(f"/api/orgs/{world.team.org_id}/webhooks/{webhook_id}", caller.headers)


async def _create_key(world: World, caller: Caller, allowed: bool) -> Call:
    return Call("/api/api-keys", caller.headers, json={"name": world.unique("k"), "scopes": ["agents:read"]})


async def _revoke_key(world: World, caller: Caller, allowed: bool) -> Call:
    key_id = await world.fresh_key() if allowed else world.ids["key_id"]
    return Call(f"/api/api-keys/{key_id}", caller.headers)


async def _user_target(world: World, allowed: bool, action: str) -> str:
    user_id = (await world.fresh_user())[0] if allowed else world.spare["user_id"]
    return f"/api/users/{user_id}/{action}"


async def _disable_user(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(await _user_target(world, allowed, "disable"), caller.headers)


async def _enable_user(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(f"/api/users/{world.spare['user_id']}/enable", caller.headers)


async def _grant_superuser(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(await _user_target(world, allowed, "superuser"), caller.headers, json={"is_superuser": True})


async def _create_agent(world: World, caller: Caller, allowed: bool) -> Call:
    return Call("/api/agents", caller.headers, json={"name": world.unique("agent"), "model": "test"})


async def _delete_agent(world: World, caller: Caller, allowed: bool) -> Call:
    agent_id = await world.fresh_agent() if allowed else world.ids["spare_agent_id"]
    return Call(f"/api/agents/{agent_id}", caller.headers)


async def _cancel_run(world: World, caller: Caller, allowed: bool) -> Call:
    run_id = await world.fresh_running_run() if allowed else world.ids["spare_run_id"]
    return Call(f"/api/runs/{run_id}/cancel", caller.headers)


async def _decide_tool_call(world: World, caller: Caller, allowed: bool) -> Call:
    run_id = await world.fresh_paused_run() if allowed else world.ids["spare_run_id"]
    body = {"decisions": [{"tool_call_id": "call_1", "decision": "deny", "reason": "oracle"}]}
    return Call(f"/api/runs/{run_id}/approvals", caller.headers, json=body)


async def _create_thread(world: World, caller: Caller, allowed: bool) -> Call:
    agent_id = world.ids["agent_id"]
    if caller.kind in ("outsider", "superuser"):
        # They act in their own organization, where the team's agent is unknown.
        agent_id = await world.fresh_agent(caller.headers)
    return Call("/api/threads", caller.headers, json={"agent_id": agent_id})


def _own_thread(body: dict[str, Any] | None = None, under: str = "") -> Builder:
    """A call on a thread the caller started (each role sees its own threads), or on `under`
    it; a fresh thread each time, so a turn never finds the thread busy."""

    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        return Call(f"/api/threads/{await world.fresh_thread(caller)}{under}", caller.headers, json=body)

    return build


async def _delete_thread(world: World, caller: Caller, allowed: bool) -> Call:
    thread_id = await world.fresh_thread(caller) if allowed else world.ids["spare_thread_id"]
    return Call(f"/api/threads/{thread_id}", caller.headers)


CALLS: dict[tuple[str, str], Builder] = {
    ("GET", "/health"): _fixed("/health"),
    ("GET", "/health/ready"): _fixed("/health/ready"),
    ("GET", "/health/live"): _fixed("/health/live"),
    ("GET", "/metrics"): _fixed("/metrics"),  # the test client is a loopback peer, no token set
    ("POST", "/auth/register"): _register,
    ("POST", "/auth/login"): _login,
    ("POST", "/auth/refresh"): _refresh,
    ("POST", "/auth/logout"): _logout,
    ("POST", "/auth/password"): _change_password,
    ("GET", "/auth/me"): _fixed("/auth/me"),
    ("POST", "/auth/switch-org"): _switch_org,
    ("GET", "/auth/oidc/providers"): _fixed("/auth/oidc/providers"),
    # No provider is configured in this world: the handler's answer is the unknown provider.
    ("GET", "/auth/oidc/{provider}/login"): _sso("/auth/oidc/none/login"),
    ("GET", "/auth/oidc/{provider}/callback"): _sso("/auth/oidc/none/callback?state=s&code=c"),
    ("GET", "/api/orgs"): _fixed("/api/orgs"),
    ("POST", "/api/orgs"): _create_org,
    ("GET", "/api/orgs/{org_id}"): _fixed("/api/orgs/{org_id}"),
    ("GET", "/api/orgs/{org_id}/members"): _fixed("/api/orgs/{org_id}/members"),
    ("POST", "/api/orgs/{org_id}/members"): _add_member,
    ("PATCH", "/api/orgs/{org_id}/members/{user_id}"): _change_role,
    ("DELETE", "/api/orgs/{org_id}/members/{user_id}"): _remove_member,
    ("PUT", "/api/orgs/{org_id}/budget"): _fixed("/api/orgs/{org_id}/budget", {"monthly_token_budget": None}),
    ("GET", "/api/orgs/{org_id}/providers"): _fixed("/api/orgs/{org_id}/providers"),
    ("POST", "/api/orgs/{org_id}/providers"): _create_provider,
    ("GET", "/api/orgs/{org_id}/providers/{provider_id}"): _fixed(
        "/api/orgs/{org_id}/providers/{provider_id}"
    ),
    ("PATCH", "/api/orgs/{org_id}/providers/{provider_id}"): _fixed(
        "/api/orgs/{org_id}/providers/{provider_id}", {"api_key": provider_key()}
    ),
    ("DELETE", "/api/orgs/{org_id}/providers/{provider_id}"): _delete_provider,
    ("GET", "/api/orgs/{org_id}/mcp-servers"): _fixed("/api/orgs/{org_id}/mcp-servers"),
    ("POST", "/api/orgs/{org_id}/mcp-servers"): _create_mcp_server,
    ("GET", "/api/orgs/{org_id}/mcp-servers/{server_id}"): _fixed(
        "/api/orgs/{org_id}/mcp-servers/{server_id}"
    ),
    ("PATCH", "/api/orgs/{org_id}/mcp-servers/{server_id}"): _fixed(
        "/api/orgs/{org_id}/mcp-servers/{server_id}", {"timeout_seconds": 10}
    ),
    ("DELETE", "/api/orgs/{org_id}/mcp-servers/{server_id}"): _delete_mcp_server,
    ("GET", "/api/orgs/{org_id}/mcp-servers/{server_id}/tools"): _fixed(
        "/api/orgs/{org_id}/mcp-servers/{server_id}/tools"
    ),
    ("GET", "/api/orgs/{org_id}/webhooks"): _fixed("/api/orgs/{org_id}/webhooks"),
    ("POST", "/api/orgs/{org_id}/webhooks"): _create_webhook,
    ("GET", "/api/orgs/{org_id}/webhooks/{webhook_id}"): _fixed("/api/orgs/{org_id}/webhooks/{webhook_id}"),
    ("PATCH", "/api/orgs/{org_id}/webhooks/{webhook_id}"): _fixed(
        "/api/orgs/{org_id}/webhooks/{webhook_id}", {"description": "changed"}
    ),
    ("DELETE", "/api/orgs/{org_id}/webhooks/{webhook_id}"): _delete_webhook,
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/rotate-secret"): _fixed(
        "/api/orgs/{org_id}/webhooks/{webhook_id}/rotate-secret"
    ),
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/ping"): _fixed(
        "/api/orgs/{org_id}/webhooks/{webhook_id}/ping"
    ),
    ("GET", "/api/orgs/{org_id}/webhooks/{webhook_id}/deliveries"): _fixed(
        "/api/orgs/{org_id}/webhooks/{webhook_id}/deliveries"
    ),
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): _fixed(
        "/api/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
    ),
    ("GET", "/api/api-keys"): _fixed("/api/api-keys"),
    ("POST", "/api/api-keys"): _create_key,
    ("DELETE", "/api/api-keys/{key_id}"): _revoke_key,
    ("GET", "/api/users"): _fixed("/api/users"),
    ("POST", "/api/users/{user_id}/disable"): _disable_user,
    ("POST", "/api/users/{user_id}/enable"): _enable_user,
    ("POST", "/api/users/{user_id}/superuser"): _grant_superuser,
    ("GET", "/api/agents"): _fixed("/api/agents"),
    ("POST", "/api/agents"): _create_agent,
    ("GET", "/api/agents/{agent_id}"): _fixed("/api/agents/{agent_id}"),
    ("PATCH", "/api/agents/{agent_id}"): _fixed("/api/agents/{agent_id}", {"description": "changed"}),
    ("DELETE", "/api/agents/{agent_id}"): _delete_agent,
    ("GET", "/api/agents/{agent_id}/versions"): _fixed("/api/agents/{agent_id}/versions"),
    ("POST", "/api/agents/{agent_id}/runs"): _fixed("/api/agents/{agent_id}/runs", {"input": "hello"}),
    ("GET", "/api/runs"): _fixed("/api/runs"),
    ("GET", "/api/runs/{run_id}"): _fixed("/api/runs/{run_id}"),
    ("POST", "/api/runs/{run_id}/cancel"): _cancel_run,
    ("GET", "/api/runs/{run_id}/events"): _fixed("/api/runs/{run_id}/events"),
    ("GET", "/api/runs/{run_id}/approvals"): _fixed("/api/runs/{run_id}/approvals"),
    ("POST", "/api/runs/{run_id}/approvals"): _decide_tool_call,
    ("GET", "/api/usage"): _fixed("/api/usage"),
    ("GET", "/api/threads"): _fixed("/api/threads"),
    ("POST", "/api/threads"): _create_thread,
    ("GET", "/api/threads/{thread_id}"): _own_thread(),
    ("PATCH", "/api/threads/{thread_id}"): _own_thread({"title": "renamed"}),
    ("DELETE", "/api/threads/{thread_id}"): _delete_thread,
    ("POST", "/api/threads/{thread_id}/runs"): _own_thread({"input": "hello"}, "/runs"),
    ("GET", "/api/threads/{thread_id}/messages"): _own_thread(under="/messages"),
    ("GET", "/api/audit-logs"): _fixed("/api/audit-logs"),
}

# Run last: a password change ends every session of the caller.
SESSION_ENDING = {("POST", "/auth/password")}
