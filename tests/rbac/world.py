"""The seeded world the authorization oracle calls into, built once per test.

A team organization with one user per role (tests.orgs.helpers.make_team), an outsider (a
user of another organization: their own personal one), an instance superuser who belongs to
no team, and an owner's API key scoped to `agents:read` only. The team holds one of each
object (agent, finished run, provider, API key, members, thread), and `fresh_*` makes a new one when
a call is expected to succeed and would consume it (a delete, a removal, a revocation), so
every allowed call reaches its handler with a valid target.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from fastapi import FastAPI
from sqlalchemy import text, update

from agentkeep.mcp.models import McpServer
from agentkeep.rbac.permissions import Role
from agentkeep.runs.states import EventKind, RunStatus
from tests.approvals.seeding import seed_paused_run
from tests.auth.helpers import bearer, register
from tests.orgs.helpers import Team, create_key, key_header, login_in, make_team
from tests.runs.seeding import seed_run
from tests.threads.seeding import seed_thread

# A receiver that never exists: the .invalid top-level domain never resolves (RFC 6761).
WEBHOOK_URL = "https://hooks.example.invalid/agentkeep"

CallerKind = Literal["role", "outsider", "superuser", "anonymous", "api_key"]


@dataclass(frozen=True)
class Caller:
    name: str
    kind: CallerKind
    headers: dict[str, str]
    # Users only: who they are and the organization their session acts in (for fresh logins).
    username: str | None = None
    org: str | None = None


def provider_key() -> str:
    """An API key in OpenAI's shape, which the suite-wide secret scan recognises."""
    return f"sk-test-{secrets.token_urlsafe(30)}"


@dataclass
class World:
    app: FastAPI
    http: httpx.AsyncClient
    team: Team
    callers: list[Caller]
    ids: dict[str, str]
    spare: dict[str, str] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def owner(self) -> dict[str, str]:
        return self.team.headers(Role.OWNER)

    def unique(self, stem: str) -> str:
        return f"{stem}-{next(self._counter)}"

    async def fresh_user(self) -> tuple[str, str]:
        """A new account in no team: (user id, username)."""
        username = self.unique("fresh")
        created = await register(self.http, username)
        assert created.status_code == 201, created.text
        return str(created.json()["id"]), username

    async def fresh_member(self) -> str:
        user_id, username = await self.fresh_user()
        added = await self.http.post(
            f"/api/orgs/{self.team.org_id}/members",
            json={"user": username, "role": "viewer"},
            headers=self.owner,
        )
        assert added.status_code == 201, added.text
        return user_id

    async def fresh_agent(self, headers: dict[str, str] | None = None) -> str:
        """A new agent of the team, or of the organization `headers` act in."""
        created = await self.http.post(
            "/api/agents", json={"name": self.unique("agent"), "model": "test"}, headers=headers or self.owner
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    async def fresh_key(self) -> str:
        return str((await create_key(self.http, self.owner, ["agents:read"]))["id"])

    async def fresh_provider(self) -> str:
        created = await self.http.post(
            f"/api/orgs/{self.team.org_id}/providers",
            json={
                "name": self.unique("provider"),
                "base_url": "https://models.example.com/v1",
                "api_key": provider_key(),
            },
            headers=self.owner,
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    async def fresh_mcp_server(self) -> str:
        """A new MCP server of the team, its tool list already cached (listing it asks no server)."""
        created = await self.http.post(
            f"/api/orgs/{self.team.org_id}/mcp-servers",
            json={"name": self.unique("mcp"), "url": "https://mcp.example.com/mcp"},
            headers=self.owner,
        )
        assert created.status_code == 201, created.text
        server_id = uuid.UUID(created.json()["id"])
        tools = [{"name": "noop", "description": None, "input_schema": {"type": "object"}}]
        async with self.app.state.sessionmaker() as session, session.begin():
            await session.execute(
                update(McpServer)
                .where(McpServer.id == server_id)
                .values(tools=tools, tools_discovered_at=datetime.now(UTC))
            )
        return str(server_id)

    async def fresh_webhook(self) -> str:
        """A new webhook of the team, disabled (its URL's .invalid name never resolves anyway)."""
        created = await self.http.post(
            f"/api/orgs/{self.team.org_id}/webhooks",
            json={"url": WEBHOOK_URL, "events": ["run.completed"], "enabled": False},
            headers=self.owner,
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    async def fresh_delivery(self, webhook_id: str) -> str:
        pinged = await self.http.post(
            f"/api/orgs/{self.team.org_id}/webhooks/{webhook_id}/ping", headers=self.owner
        )
        assert pinged.status_code == 202, pinged.text
        return str(pinged.json()["id"])

    async def fresh_thread(self, caller: Caller) -> str:
        """A thread the caller started, as each role must see its own; for callers outside
        the team's roles, one the owner started. Inserted directly: viewers and auditors
        cannot start threads, yet a member demoted to them keeps seeing their own."""
        role = Role(caller.name) if caller.kind == "role" else Role.OWNER
        return await seed_thread(self.app, self.team.org_id, self.ids["agent_id"], self.team.user_ids[role])

    async def fresh_running_run(self) -> str:
        return await seed_run(self.app, self.team.org_id, self.ids["agent_id"], status=RunStatus.RUNNING)

    async def fresh_paused_run(self) -> str:
        """A run waiting for a decision on its one tool call, `call_1`."""
        return await seed_paused_run(self.app, self.team.org_id, self.ids["agent_id"])

    async def fresh_session(self, caller: Caller) -> dict[str, str]:
        """A second login of a user caller (same organization), to be ended or moved; other
        callers keep their own headers (they are refused before any session is touched)."""
        if caller.username is None:
            return caller.headers
        return bearer((await login_in(self.http, caller.username, caller.org))["access_token"])

    async def fresh_refresh_token(self) -> str:
        return str((await login_in(self.http, self.spare["username"]))["refresh_token"])


async def make_superuser(app: FastAPI, username: str) -> None:
    """Instance administrators are made by `agentkeep create-admin`, never over HTTP."""
    async with app.state.sessionmaker() as session, session.begin():
        statement = text("UPDATE users SET is_superuser = :yes WHERE username = :name")
        await session.execute(statement, {"yes": True, "name": username})


async def _user_in_own_org(http: httpx.AsyncClient, username: str) -> Caller:
    created = await register(http, username)
    assert created.status_code == 201, created.text
    tokens = await login_in(http, username)
    return Caller(username, "outsider", bearer(tokens["access_token"]), username)


async def build_world(app: FastAPI, http: httpx.AsyncClient) -> World:
    team = await make_team(http)
    callers = [Caller(role.value, "role", team.headers(role), team.users[role], team.slug) for role in Role]
    callers.append(await _user_in_own_org(http, "oscar"))
    await register(http, "root")
    await make_superuser(app, "root")
    root_tokens = await login_in(http, "root")
    callers.append(Caller("superuser", "superuser", bearer(root_tokens["access_token"]), "root"))
    callers.append(Caller("anonymous", "anonymous", {}))
    narrow = await create_key(http, team.headers(Role.OWNER), ["agents:read"])
    callers.append(Caller("key:agents:read", "api_key", key_header(narrow)))

    world = World(app=app, http=http, team=team, callers=callers, ids={})
    spare_id, spare_name = await world.fresh_user()
    world.spare = {"user_id": spare_id, "username": spare_name}
    agent_id = await world.fresh_agent()
    events: list[tuple[EventKind, dict[str, Any]]] = [
        (EventKind.STATUS, {"status": "queued"}),
        (EventKind.STATUS, {"status": "completed", "stop_reason": "end_turn"}),
    ]
    run_id = await seed_run(app, team.org_id, agent_id, status=RunStatus.COMPLETED, events=events)
    world.ids = {"org_id": team.org_id, "agent_id": agent_id, "run_id": run_id}
    world.ids |= {
        "provider_id": await world.fresh_provider(),
        "server_id": await world.fresh_mcp_server(),
        "key_id": await world.fresh_key(),
        # A viewer of the team: the target of member calls expected to be refused.
        "member_id": await world.fresh_member(),
        # Targets of refused destructive calls, apart from the objects other calls read.
        "spare_agent_id": await world.fresh_agent(),
        "spare_provider_id": await world.fresh_provider(),
        "spare_server_id": await world.fresh_mcp_server(),
        "webhook_id": await world.fresh_webhook(),
        "spare_webhook_id": await world.fresh_webhook(),
        "spare_run_id": await world.fresh_running_run(),
    }
    world.ids["delivery_id"] = await world.fresh_delivery(world.ids["webhook_id"])
    world.ids["spare_thread_id"] = await world.fresh_thread(callers[0])
    return world
