"""Every console route declares exactly one access rule, like every API route
(tests/rbac/test_route_coverage.py): a page permission, signed in, or anonymous."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from agentkeep.app import create_app
from agentkeep.auth.dependencies import get_current_principal
from agentkeep.config import Settings
from agentkeep.console.access import PagePermission, anonymous, signed_in
from agentkeep.console.pages.runs import PageRunApproval
from agentkeep.console.route import ConsoleRoute
from agentkeep.rbac.dependencies import CONSOLE_TAG, dependency_calls


def _markers(dependant: Dependant) -> list[str]:
    found = []
    for call in dependency_calls(dependant):
        # The approval route: the API's approver check (roles from the run's agent), console caller.
        if isinstance(call, PagePermission | PageRunApproval):
            found.append(f"permission {call.permission.value}")
        elif call is signed_in:
            found.append("signed in")
        elif call is anonymous:
            found.append("anonymous")
    return found


def console_routes(app: FastAPI) -> list[APIRoute]:
    return [
        context.original_route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and CONSOLE_TAG in context.original_route.tags
    ]


def test_every_console_route_declares_exactly_one_access_rule(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    console = console_routes(app)
    assert len(console) >= 8
    problems = [
        f"{sorted(route.methods or ())} {route.path}: {_markers(route.dependant) or 'no access rule'}"
        for route in console
        if len(_markers(route.dependant)) != 1
    ]
    assert problems == []
    assert all(isinstance(route, ConsoleRoute) for route in console)
    assert all(not route.include_in_schema for route in console)


def test_console_paths_stay_clear_of_the_api(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    for route in console_routes(app):
        assert not route.path.startswith(("/api", "/auth", "/health", "/metrics", "/docs")), route.path


def test_no_console_route_reads_the_api_caller(make_settings: Callable[..., Settings]) -> None:
    """A console page's caller comes from its cookies (console_principal), never from the API's
    Authorization header: a page that declared the API's own dependency would be reachable
    with a bearer token and no CSRF check."""
    app = create_app(make_settings())
    for route in console_routes(app):
        assert get_current_principal not in set(dependency_calls(route.dependant)), route.path
