"""Privilege escalation through grants: no user or key grants, or takes away, a permission it
does not effectively hold (docs/SECURITY.md "Granting").

Every expectation below is written by hand from that rule and the documented role table:
a grant of role R is allowed when the grantor holds every permission of R; acting on a member
(role change, removal) also needs every permission of the member's current role. A key holds
its scopes intersected with its creator's current role.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.auth.helpers import bearer, register
from tests.orgs.helpers import Team, create_key, key_header, login_in, make_team
from tests.rbac.world import make_superuser
from tests.runs.seeding import audit_rows

ESCALATION = "urn:agentkeep:problem:privilege-escalation"

VIEWER = ["agents:read", "runs:read", "usage:read", "members:read"]
ADMIN = [
    *VIEWER,
    "agents:write",
    "runs:create",
    "runs:cancel",
    "runs:approve",
    "audit:read",
    "members:manage",
    "apikeys:manage",
    "threads:read_all",
]
EVERYTHING = [*ADMIN, "org:manage"]

# Keys an owner makes; each holds exactly these scopes (the owner holds them all).
KEY_SCOPES: dict[str, list[str]] = {
    "key:members:manage": ["members:manage"],
    "key:viewer+members:manage": [*VIEWER, "members:manage"],
    "key:admin": ADMIN,
    "key:owner": EVERYTHING,
}


class Grantors:
    """The team's admin and owner users, and the owner's keys above, by name."""

    def __init__(self, team: Team, keys: dict[str, dict[str, str]]) -> None:
        self.team = team
        self.keys = keys

    def headers(self, name: str) -> dict[str, str]:
        return self.keys[name] if name in self.keys else self.team.headers(Role(name))


async def _grantors(client: httpx.AsyncClient) -> Grantors:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    keys = {name: key_header(await create_key(client, owner, scopes)) for name, scopes in KEY_SCOPES.items()}
    return Grantors(team, keys)


async def _new_user(client: httpx.AsyncClient, name: str) -> tuple[str, str]:
    created = await register(client, name)
    assert created.status_code == 201, created.text
    return str(created.json()["id"]), name


async def _new_member(client: httpx.AsyncClient, grantors: Grantors, name: str, role: str) -> str:
    user_id, username = await _new_user(client, name)
    members = f"/api/orgs/{grantors.team.org_id}/members"
    added = await client.post(
        members, json={"user": username, "role": role}, headers=grantors.team.headers(Role.OWNER)
    )
    assert added.status_code == 201, added.text
    return user_id


async def _roles(client: httpx.AsyncClient, team: Team) -> dict[str, str]:
    response = await client.get(f"/api/orgs/{team.org_id}/members", headers=team.headers(Role.OWNER))
    assert response.status_code == 200
    return {item["user_id"]: item["role"] for item in response.json()["items"]}


def _outcome(response: httpx.Response, success: int) -> str:
    if response.status_code == success:
        return "allowed"
    if response.status_code == 403 and response.json()["type"] == ESCALATION:
        return "refused"
    return f"unexpected {response.status_code} {response.text[:200]}"


# (grantor, role given to a new member, allowed)
ADD_CASES = [
    ("key:members:manage", "viewer", False),
    ("key:members:manage", "owner", False),  # the reported finding
    ("key:viewer+members:manage", "viewer", True),
    ("key:viewer+members:manage", "auditor", False),
    ("key:viewer+members:manage", "member", False),
    ("key:admin", "admin", True),
    ("key:admin", "auditor", True),
    ("key:admin", "owner", False),
    ("key:owner", "owner", True),
    ("admin", "admin", True),
    ("admin", "owner", False),
    ("owner", "owner", True),
]


async def test_adding_a_member_grants_only_roles_the_grantor_holds(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    grantors = await _grantors(client)
    members = f"/api/orgs/{grantors.team.org_id}/members"
    wrong = []
    for number, (grantor, role, allowed) in enumerate(ADD_CASES):
        user_id, username = await _new_user(client, f"joiner-{number}")
        response = await client.post(
            members, json={"user": username, "role": role}, headers=grantors.headers(grantor)
        )
        outcome = _outcome(response, 201)
        roles = await _roles(client, grantors.team)
        if outcome != ("allowed" if allowed else "refused") or roles.get(user_id) != (
            role if allowed else None
        ):
            wrong.append(f"{grantor} adds {role}: {outcome}, now {roles.get(user_id)}")
    assert wrong == []
    refusals = await audit_rows(app, "privilege_escalation_denied")
    denied = [(grantor, role) for grantor, role, allowed in ADD_CASES if not allowed]
    assert [(row.details["target"], row.status) for row in refusals] == [
        (role, "denied") for _, role in denied
    ]
    assert [row.actor_type for row in refusals] == [
        "api_key" if grantor.startswith("key:") else "user" for grantor, _ in denied
    ]
    assert all(row.org_id is not None and str(row.org_id) == grantors.team.org_id for row in refusals)
    assert refusals[1].details["missing_permissions"] == sorted(set(EVERYTHING) - {"members:manage"})


# (grantor, the member's role now, the role asked for, allowed)
CHANGE_CASES = [
    ("key:members:manage", "viewer", "viewer", False),
    ("key:viewer+members:manage", "viewer", "member", False),
    ("key:viewer+members:manage", "member", "viewer", False),  # the member holds agents:write
    ("key:viewer+members:manage", "viewer", "viewer", True),
    ("key:admin", "viewer", "admin", True),
    ("key:admin", "owner", "viewer", False),
    ("key:admin", "admin", "owner", False),
    ("admin", "owner", "admin", False),
    ("admin", "admin", "viewer", True),
    ("admin", "viewer", "owner", False),
    ("owner", "viewer", "owner", True),
    ("key:owner", "owner", "admin", True),
]


async def test_changing_a_role_needs_both_the_old_and_the_new_roles_permissions(
    client: httpx.AsyncClient,
) -> None:
    grantors = await _grantors(client)
    wrong = []
    for number, (grantor, before, after, allowed) in enumerate(CHANGE_CASES):
        user_id = await _new_member(client, grantors, f"changed-{number}", before)
        response = await client.patch(
            f"/api/orgs/{grantors.team.org_id}/members/{user_id}",
            json={"role": after},
            headers=grantors.headers(grantor),
        )
        outcome = _outcome(response, 200)
        now = (await _roles(client, grantors.team))[user_id]
        if outcome != ("allowed" if allowed else "refused") or now != (after if allowed else before):
            wrong.append(f"{grantor} {before}->{after}: {outcome}, now {now}")
    assert wrong == []


# (grantor, the removed member's role, allowed)
REMOVE_CASES = [
    ("key:members:manage", "viewer", False),
    ("key:viewer+members:manage", "viewer", True),
    ("key:viewer+members:manage", "auditor", False),
    ("key:admin", "admin", True),
    ("key:admin", "owner", False),
    ("admin", "owner", False),
    ("admin", "admin", True),
    ("key:owner", "owner", True),
    ("owner", "owner", True),
]


async def test_removing_a_member_needs_every_permission_of_their_role(client: httpx.AsyncClient) -> None:
    grantors = await _grantors(client)
    wrong = []
    for number, (grantor, role, allowed) in enumerate(REMOVE_CASES):
        user_id = await _new_member(client, grantors, f"removed-{number}", role)
        response = await client.delete(
            f"/api/orgs/{grantors.team.org_id}/members/{user_id}", headers=grantors.headers(grantor)
        )
        outcome = _outcome(response, 204)
        still = user_id in await _roles(client, grantors.team)
        if outcome != ("allowed" if allowed else "refused") or still is allowed:
            wrong.append(f"{grantor} removes {role}: {outcome}, still a member: {still}")
    assert wrong == []


async def test_the_reported_key_can_neither_crown_an_owner_nor_remove_the_human_one(
    client: httpx.AsyncClient,
) -> None:
    grantors = await _grantors(client)
    key = grantors.headers("key:members:manage")
    owner_id = grantors.team.user_ids[Role.OWNER]
    members = f"/api/orgs/{grantors.team.org_id}/members"
    before = await _roles(client, grantors.team)
    crowned = await client.post(
        members, json={"user": grantors.team.users[Role.VIEWER], "role": "owner"}, headers=key
    )
    promoted = await client.patch(
        f"{members}/{grantors.team.user_ids[Role.ADMIN]}", json={"role": "owner"}, headers=key
    )
    removed = await client.delete(f"{members}/{owner_id}", headers=key)
    assert [crowned.status_code, promoted.status_code, removed.status_code] == [403, 403, 403]
    assert {crowned.json()["type"], promoted.json()["type"], removed.json()["type"]} == {ESCALATION}
    assert "org:manage" in crowned.json()["missing_permissions"]
    assert await _roles(client, grantors.team) == before


async def test_the_last_owner_stays_even_for_a_key_holding_everything(client: httpx.AsyncClient) -> None:
    grantors = await _grantors(client)
    owner_path = f"/api/orgs/{grantors.team.org_id}/members/{grantors.team.user_ids[Role.OWNER]}"
    key = grantors.headers("key:owner")
    demoted = await client.patch(owner_path, json={"role": "admin"}, headers=key)
    removed = await client.delete(owner_path, headers=key)
    assert [demoted.status_code, removed.status_code] == [409, 409]
    assert demoted.json()["type"] == removed.json()["type"] == "urn:agentkeep:problem:last-owner"


# (grantor, scopes asked for a new key, allowed); the grantor keys hold exactly their scopes.
KEY_CREATE_SCOPES: dict[str, list[str]] = {
    "key:apikeys:manage": ["apikeys:manage"],
    "key:apikeys:manage+agents:read": ["apikeys:manage", "agents:read"],
}
KEY_CASES = [
    ("key:apikeys:manage", ["apikeys:manage"], True),
    ("key:apikeys:manage", ["agents:read"], False),
    ("key:apikeys:manage", ["members:manage"], False),
    ("key:apikeys:manage+agents:read", ["agents:read"], True),
    ("key:apikeys:manage+agents:read", ["agents:read", "agents:write"], False),
    ("key:admin", ["audit:read", "members:manage"], True),
    ("key:admin", ["org:manage"], False),
    ("key:owner", ["org:manage"], True),
    ("admin", ["apikeys:manage", "audit:read"], True),
    ("admin", ["org:manage"], False),
]


async def test_a_new_key_gets_only_scopes_its_creator_holds(app: FastAPI, client: httpx.AsyncClient) -> None:
    grantors = await _grantors(client)
    owner = grantors.team.headers(Role.OWNER)
    for name, scopes in KEY_CREATE_SCOPES.items():
        grantors.keys[name] = key_header(await create_key(client, owner, scopes))
    wrong = []
    for grantor, scopes, allowed in KEY_CASES:
        response = await client.post(
            "/api/api-keys", json={"name": "minted", "scopes": scopes}, headers=grantors.headers(grantor)
        )
        outcome = _outcome(response, 201)
        if outcome != ("allowed" if allowed else "refused"):
            wrong.append(f"{grantor} mints {scopes}: {outcome}")
        elif allowed and sorted(response.json()["scopes"]) != sorted(scopes):
            wrong.append(f"{grantor} mints {scopes}: got {response.json()['scopes']}")
    assert wrong == []
    minted = (await client.get("/api/api-keys", headers=owner)).json()["items"]
    assert sum(item["name"] == "minted" for item in minted) == sum(allowed for *_, allowed in KEY_CASES)
    refusals = await audit_rows(app, "privilege_escalation_denied")
    assert [row.details["attempt"] for row in refusals] == ["grant_scopes"] * sum(
        not allowed for *_, allowed in KEY_CASES
    )


async def test_demoting_a_keys_creator_narrows_the_key_at_once(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    scopes = ["agents:read", "agents:write", "apikeys:manage", "members:read", "members:manage"]
    key = key_header(await create_key(client, team.headers(Role.ADMIN), scopes))
    admin_path = f"/api/orgs/{team.org_id}/members/{team.user_ids[Role.ADMIN]}"
    agent = {"name": "by key", "model": "test"}

    async def can(method: str, path: str, body: dict[str, Any] | None = None) -> int:
        return (await client.request(method, path, json=body, headers=key)).status_code

    assert await can("POST", "/api/api-keys", {"name": "k", "scopes": ["agents:read"]}) == 201
    demoted = await client.patch(admin_path, json={"role": "member"}, headers=team.headers(Role.OWNER))
    assert demoted.status_code == 200
    # A member holds agents:write but neither apikeys:manage nor members:manage.
    assert await can("POST", "/api/api-keys", {"name": "k2", "scopes": ["agents:read"]}) == 403
    assert await can("POST", f"/api/orgs/{team.org_id}/members", {"user": "nobody", "role": "viewer"}) == 403
    assert await can("POST", "/api/agents", agent) == 201
    await client.patch(admin_path, json={"role": "viewer"}, headers=team.headers(Role.OWNER))
    assert await can("POST", "/api/agents", {**agent, "name": "again"}) == 403
    assert await can("GET", "/api/agents") == 200


async def test_superuser_rights_come_only_from_a_superusers_login_session(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    target_id, _ = await _new_user(client, "hopeful")
    await _new_user(client, "root")
    await make_superuser(app, "root")
    root = bearer((await login_in(client, "root"))["access_token"])
    # Keys made by a superuser (in their personal organization, every scope) and by an owner.
    root_key = key_header(await create_key(client, root, EVERYTHING))
    owner_key = key_header(await create_key(client, team.headers(Role.OWNER), EVERYTHING))
    grant = f"/api/users/{target_id}/superuser"
    body = {"is_superuser": True}
    for headers in (team.headers(Role.OWNER), owner_key, root_key):
        refused = await client.post(grant, json=body, headers=headers)
        assert refused.status_code == 403, refused.text
        assert (await client.get("/api/users", headers=headers)).status_code == 403
    granted = await client.post(grant, json=body, headers=root)
    assert granted.status_code == 200
    assert granted.json()["is_superuser"] is True


async def test_a_key_cannot_mint_a_key_that_outlives_or_outreaches_it(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    day = datetime.now(UTC) + timedelta(days=1)
    # The test client's address is 127.0.0.1.
    parent = await create_key(
        client,
        team.headers(Role.OWNER),
        ["apikeys:manage", "agents:read"],
        expires_at=day.isoformat(),
        allowed_cidrs=["127.0.0.0/8"],
    )
    headers = key_header(parent)

    async def mint(**limits: Any) -> httpx.Response:
        body = {"name": "child", "scopes": ["agents:read"], **limits}
        return await client.post("/api/api-keys", json=body, headers=headers)

    inherited = await mint()
    assert inherited.status_code == 201, inherited.text
    assert inherited.json()["expires_at"] == parent["expires_at"]
    assert inherited.json()["allowed_cidrs"] == ["127.0.0.0/8"]
    narrower = await mint(expires_at=(day - timedelta(hours=1)).isoformat(), allowed_cidrs=["127.0.0.1"])
    assert narrower.status_code == 201, narrower.text
    assert narrower.json()["allowed_cidrs"] == ["127.0.0.1/32"]
    for limits, exceeded in (
        ({"expires_at": (day + timedelta(days=1)).isoformat()}, ["expires_at"]),
        ({"allowed_cidrs": ["0.0.0.0/0"]}, ["allowed_cidrs"]),
        ({"allowed_cidrs": ["127.0.0.1", "::1"]}, ["allowed_cidrs"]),
    ):
        refused = await mint(**limits)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == ESCALATION
        assert refused.json()["exceeded_key_limits"] == exceeded
    unbounded = await create_key(client, team.headers(Role.OWNER), ["agents:read"])
    assert unbounded["expires_at"] is None
    assert unbounded["allowed_cidrs"] is None
