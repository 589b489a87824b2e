"""Route x role matrix: every protected route of the app, checked against ROLE_PERMISSIONS.

Built from app.routes and each route's declared access, so a new route is covered without
editing this file. A permitted caller may still get 404 or 422 (random ids, empty bodies):
what matters is that it is never 401/403, and that every other role gets the 403.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.audit.models import AuditLog
from agentkeep.rbac.dependencies import api_routes
from agentkeep.rbac.permissions import ROLE_PERMISSIONS, Permission, Role
from tests.orgs.helpers import create_key, fill_path, key_header, make_team

DENIED_TYPE = "urn:agentkeep:problem:permission-denied"
WRITE_METHODS = {"POST", "PUT", "PATCH"}


async def _call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body: dict[str, object] | None = {} if method in WRITE_METHODS else None
    return await http.request(method, path, headers=headers, json=body)


async def test_every_protected_route_answers_each_role_as_the_permission_table_says(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    # An owner's key with every scope, and one with a single scope (MEMBERS_READ).
    keys = {
        "key:all": (
            key_header(await create_key(client, team.headers(Role.OWNER), [p.value for p in Permission])),
            frozenset(Permission),
        ),
        "key:members:read": (
            key_header(await create_key(client, team.headers(Role.OWNER), ["members:read"])),
            frozenset({Permission.MEMBERS_READ}),
        ),
    }
    callers = {role.value: (team.headers(role), ROLE_PERMISSIONS[role]) for role in Role} | keys
    routes, _ = api_routes(app)
    checked, mismatches = 0, []
    for route in routes:
        (access,) = route.access
        if access.kind == "public":
            continue
        path = fill_path(route.path, {"org_id": team.org_id})
        for method in sorted(route.methods - {"HEAD"}):
            anonymous = await _call(client, method, path, {})
            if anonymous.status_code != 401:
                mismatches.append(f"anonymous {method} {route.path}: {anonymous.status_code}")
            if access.kind != "permission":
                for headers, _ in keys.values():  # API keys act through permission routes only
                    assert (await _call(client, method, path, headers)).status_code == 403, route.path
                continue
            assert access.permission is not None
            for caller, (headers, permissions) in callers.items():
                response = await _call(client, method, path, headers)
                allowed = access.permission in permissions
                denied = response.status_code == 403 and response.json()["type"] == DENIED_TYPE
                if allowed == denied or response.status_code == 401:
                    mismatches.append(f"{caller} {method} {route.path}: {response.status_code}")
                checked += 1
    assert mismatches == []
    assert checked >= 7 * 9


async def test_superuser_routes_refuse_every_organization_role(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    routes, _ = api_routes(app)
    superuser_routes = [route for route in routes if route.access[0].kind == "superuser"]
    for route in superuser_routes:
        path = fill_path(route.path, {"org_id": team.org_id})
        for method in route.methods - {"HEAD"}:
            for role in (Role.OWNER, Role.ADMIN):
                assert (await _call(client, method, path, team.headers(role))).status_code == 403


async def test_a_denial_is_audited_once_per_principal_permission_and_window(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    for _ in range(3):
        denied = await client.post(
            f"/api/orgs/{team.org_id}/members",
            json={"user": "nobody", "role": "viewer"},
            headers=team.headers(Role.VIEWER),
        )
        assert denied.status_code == 403
    await client.get("/api/audit-logs", headers=team.headers(Role.VIEWER))
    async with app.state.sessionmaker() as session:
        rows = list(
            (await session.scalars(select(AuditLog).where(AuditLog.action == "permission_denied"))).all()
        )
    assert [(row.details["permission"], row.resource_id) for row in rows] == [
        ("members:manage", "POST /api/orgs/{org_id}/members"),
        ("audit:read", "GET /api/audit-logs"),
    ]
    assert all(str(row.user_id) == team.user_ids[Role.VIEWER] for row in rows)
    assert all(str(row.org_id) == team.org_id for row in rows)
    assert all(row.status == "denied" for row in rows)
