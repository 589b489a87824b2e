"""A team organization with one user per role, for authorization tests."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from agentkeep.rbac.permissions import Role
from tests.auth.helpers import PASSWORD, bearer, register

ROLE_USERS = {Role.ADMIN: "adam", Role.MEMBER: "mia", Role.VIEWER: "vic", Role.AUDITOR: "aude"}
PATH_PARAM = re.compile(r"{(\w+)}")


async def login_in(http: httpx.AsyncClient, username: str, org: str | None = None) -> dict[str, Any]:
    data = {"username": username, "password": PASSWORD, **({"org": org} if org else {})}
    response = await http.post("/auth/login", data=data)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def my_orgs(http: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await http.get("/api/orgs", headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@dataclass
class Team:
    org_id: str
    slug: str
    users: dict[Role, str]
    user_ids: dict[Role, str]
    tokens: dict[Role, str] = field(default_factory=dict)

    def headers(self, role: Role) -> dict[str, str]:
        return bearer(self.tokens[role])


async def make_team(http: httpx.AsyncClient, slug: str = "acme", owner: str = "olivia") -> Team:
    """`owner` creates the team; one more user per other role joins; all log in to it."""
    users = {Role.OWNER: owner, **{role: f"{name}-{slug}" for role, name in ROLE_USERS.items()}}
    user_ids = {}
    for role, username in users.items():
        created = await register(http, username)
        assert created.status_code == 201, created.text
        user_ids[role] = created.json()["id"]
    personal = await login_in(http, owner)
    created = await http.post(
        "/api/orgs", json={"name": slug.title(), "slug": slug}, headers=bearer(personal["access_token"])
    )
    assert created.status_code == 201, created.text
    team = Team(org_id=created.json()["id"], slug=slug, users=users, user_ids=user_ids)
    team.tokens[Role.OWNER] = (await login_in(http, owner, slug))["access_token"]
    for role, username in users.items():
        if role is Role.OWNER:
            continue
        added = await http.post(
            f"/api/orgs/{team.org_id}/members",
            json={"user": username, "role": role.value},
            headers=team.headers(Role.OWNER),
        )
        assert added.status_code == 201, added.text
        team.tokens[role] = (await login_in(http, username, slug))["access_token"]
    return team


def fill_path(path: str, values: dict[str, str]) -> str:
    """Replace each {param}: from `values` when named there, else a fresh random UUID."""
    return PATH_PARAM.sub(lambda match: values.get(match.group(1), str(uuid.uuid4())), path)


async def create_key(
    http: httpx.AsyncClient, headers: dict[str, str], scopes: list[str], **fields: Any
) -> dict[str, Any]:
    response = await http.post(
        "/api/api-keys", json={"name": "ci", "scopes": scopes, **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def key_header(key: dict[str, Any]) -> dict[str, str]:
    return {"X-API-Key": str(key["key"])}
