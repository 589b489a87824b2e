"""Denials from the routes' own declarations: every route the app marks superuser-only
refuses organization roles, and a denial is audited once per window.

The full operation x caller check, against a table written from the docs rather than from
these declarations, is tests/rbac/test_oracle.py.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.audit.models import AuditLog
from agentkeep.rbac.dependencies import api_routes
from agentkeep.rbac.permissions import Role
from tests.orgs.helpers import fill_path, make_team

WRITE_METHODS = {"POST", "PUT", "PATCH"}


async def _call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body: dict[str, object] | None = {} if method in WRITE_METHODS else None
    return await http.request(method, path, headers=headers, json=body)


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
            (
                await session.scalars(
                    select(AuditLog)
                    .where(AuditLog.action == "permission_denied")
                    .order_by(AuditLog.timestamp)  # in the order the requests were made
                )
            ).all()
        )
    assert [(row.details["permission"], row.resource_id) for row in rows] == [
        ("members:manage", "POST /api/orgs/{org_id}/members"),
        ("audit:read", "GET /api/audit-logs"),
    ]
    assert all(str(row.user_id) == team.user_ids[Role.VIEWER] for row in rows)
    assert all(str(row.org_id) == team.org_id for row in rows)
    assert all(row.status == "denied" for row in rows)
