"""Every route declares exactly one access rule: a permission, authenticated, superuser or public."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from agentkeep.app import create_app
from agentkeep.auth.dependencies import CurrentPrincipal
from agentkeep.config import Settings
from agentkeep.rbac.dependencies import api_routes

# Served by FastAPI itself (only when API_DOCS_ENABLED): public documentation.
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def undeclared(app: FastAPI) -> list[str]:
    routes, others = api_routes(app)
    problems = [
        f"{sorted(route.methods)} {route.path}: {list(route.access) or 'no access rule'}"
        for route in routes
        if len(route.access) != 1
    ]
    problems += [
        f"unexpected route {route!r}" for route in others if getattr(route, "path", None) not in DOCS_PATHS
    ]
    return problems


def test_every_route_declares_exactly_one_access_rule(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(api_docs_enabled=True))
    routes, _ = api_routes(app)
    assert len(routes) > 10
    assert undeclared(app) == []


def test_a_route_with_only_a_bare_principal_is_reported(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())

    @app.get("/api/forgotten")
    async def forgotten(principal: CurrentPrincipal) -> None:
        """Authenticated, but declares no permission."""

    assert undeclared(app) == ["['GET'] /api/forgotten: no access rule"]
