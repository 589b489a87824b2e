"""How a route declares who may call it: exactly one of `require(permission)`, `Authenticated`,
`SuperuserPrincipal` or `Public`. tests/rbac/test_route_coverage.py fails on any route that
declares none (or more than one), so access control is deny-by-default by construction.

    AgentsRead = Annotated[Principal, Depends(require(Permission.AGENTS_READ))]

    @router.get("/api/agents")
    async def list_agents(principal: AgentsRead) -> ...

A denial is a 403 problem and a `permission_denied` audit record, at most one per principal,
permission and minute (the rate limiter's storage keeps the window, shared by instances).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import BaseRoute

from agentkeep.audit.actions import ActorType, AuditAction, AuditStatus
from agentkeep.audit.service import audit_service_for
from agentkeep.auth.dependencies import (
    CurrentPrincipal,
    Principal,
    get_superuser_principal,
    resolve_principal,
)
from agentkeep.auth.errors import SessionRequired
from agentkeep.db.session import SessionDep
from agentkeep.errors import Forbidden
from agentkeep.ratelimit.dependency import rate_limiter_of
from agentkeep.ratelimit.rules import KeyKind, Rule, RuleName
from agentkeep.rbac.permissions import Permission

# One `permission_denied` record per principal and permission in this window.
DENIAL_AUDIT_WINDOW = Rule(RuleName.API, "1/minute", KeyKind.PRINCIPAL, "permission_denied audit records")


class PermissionDenied(Forbidden):
    type_slug = "permission-denied"
    title = "Permission denied"


class PermissionCheck:
    """A permission test on a resolved caller, its audited denial and its 403: what
    `require(permission)` does once it has the caller, and what the console's page markers
    do with theirs (agentkeep.console.access)."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def __repr__(self) -> str:
        return f"require({self.permission.value!r})"

    async def check(self, request: Request, principal: Principal, session: AsyncSession) -> Principal:
        if principal.can(self.permission):
            return principal
        raise await self.denial(request, principal, session)

    async def denial(
        self, request: Request, principal: Principal, session: AsyncSession, detail: str | None = None
    ) -> PermissionDenied:
        """Audit the denial (at most once a minute per principal and permission); the 403 to raise."""
        audit = audit_service_for(request, session)
        path = getattr(request.scope.get("route"), "path", None) or request.url.path
        limiter = rate_limiter_of(request)
        who = f"{principal.limit_key}|{principal.org_id}|{self.permission.value}"
        if await limiter.first_in_window(
            DENIAL_AUDIT_WINDOW, limiter.identity(who), topic="permission_denied"
        ):
            audit.failure(
                AuditAction.PERMISSION_DENIED,
                user_id=principal.user_id,
                org_id=principal.org_id,
                actor_type=ActorType.API_KEY if principal.kind == "api_key" else ActorType.USER,
                status=AuditStatus.DENIED,
                resource_type="route",
                resource_id=f"{request.method} {path}",
                details={
                    "permission": self.permission.value,
                    "role": principal.role.value if principal.role else None,
                    "api_key_id": str(principal.api_key_id) if principal.api_key_id else None,
                },
            )
        if principal.role is None:
            return PermissionDenied(
                "You are not a member of the organization this token acts in; "
                "switch organizations with POST /auth/switch-org."
            )
        return PermissionDenied(
            detail
            or f"This action requires the '{self.permission.value}' permission in the current organization."
        )


class RequirePermission(PermissionCheck):
    """The dependency `require(permission)` returns; FastAPI calls the instance.

    It resolves the caller itself (`resolve_principal`, what `CurrentPrincipal` does) instead
    of declaring `CurrentPrincipal` and its credentials: on every protected request FastAPI
    solves two dependencies (this one and the session) instead of five."""

    async def __call__(self, request: Request, session: SessionDep) -> Principal:
        return await self.check(request, await resolve_principal(request, session), session)


def require(permission: Permission) -> RequirePermission:
    """A dependency that answers the Principal when it holds `permission` now, else 403."""
    return RequirePermission(permission)


async def authenticated(principal: CurrentPrincipal) -> Principal:
    """Marker: any user logged in (routes about the caller itself, not an organization).
    API keys act only through permission routes: they never reach these."""
    if principal.kind == "api_key":
        raise SessionRequired("This endpoint needs a login session, not an API key.")
    return principal


async def public() -> None:
    """Marker: no authentication (health, login, registration...)."""


Authenticated = Annotated[Principal, Depends(authenticated)]
Public = Depends(public)


@dataclass(frozen=True, slots=True)
class RouteAccess:
    kind: Literal["permission", "authenticated", "superuser", "public"]
    permission: Permission | None = None


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One API route as served (router prefixes and router-level dependencies applied)."""

    path: str
    methods: frozenset[str]
    access: tuple[RouteAccess, ...]


# The web console's pages (agentkeep.console) carry this tag. They are not API operations:
# their own access markers are checked by tests/console/test_routes.py.
CONSOLE_TAG = "console"


def api_routes(app: FastAPI) -> tuple[list[RouteInfo], list[BaseRoute]]:
    """The app's API routes with their declared access, and every other (non-API, non-console)
    route."""
    infos: list[RouteInfo] = []
    others: list[BaseRoute] = []
    for context in iter_route_contexts(app.routes):
        if CONSOLE_TAG in getattr(context.original_route, "tags", ()):
            continue
        dependant = getattr(context, "dependant", None)
        if not isinstance(dependant, Dependant):
            others.append(context.original_route)
            continue
        infos.append(
            RouteInfo(
                path=str(context.path),
                methods=frozenset(context.methods or ()),
                access=tuple(declared_access(dependant)),
            )
        )
    return infos, others


def dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every callable in a route's dependency tree, depth first, repeats included."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from dependency_calls(sub)


def declared_access(dependant: Dependant) -> list[RouteAccess]:
    """Every access marker in a route's dependency tree (a correct route has exactly one)."""
    found: list[RouteAccess] = []
    for call in dependency_calls(dependant):
        marker: object = call  # a PermissionCheck subclass is the callable, not the base
        if isinstance(marker, PermissionCheck):
            found.append(RouteAccess("permission", marker.permission))
        elif call is authenticated:
            found.append(RouteAccess("authenticated"))
        elif call is get_superuser_principal:
            found.append(RouteAccess("superuser"))
        elif call is public:
            found.append(RouteAccess("public"))
    return found
