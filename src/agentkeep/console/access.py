"""Who is calling a console page, and may they: the console's counterparts of the API's
`get_current_principal`, `require(permission)`, `Authenticated` and `Public`.

The caller comes from the session cookies instead of the Authorization header; everything
after that is the API's own code: the same session check (revocation ends console access at
once), the same per-user RATE_LIMIT_API budget, the same permission test and the same
audited 403. A state-changing request must also pass the CSRF checks (csrf.py) before its
page runs. Every console route declares exactly one of `page_permission(...)`,
`SignedIn` or `Anonymous` (tests/console/test_routes.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentkeep.auth.dependencies import Principal, session_principal, token_codec_of
from agentkeep.auth.errors import InvalidAccessToken, RefreshRejected
from agentkeep.auth.service import authenticate_access_token
from agentkeep.console import csrf
from agentkeep.console.session import (
    ACCESS,
    REFRESH,
    forget_tokens,
    read_cookie,
    request_slot,
    store_tokens,
)
from agentkeep.db.session import SessionDep
from agentkeep.ratelimit.dependency import enforce_principal_limit
from agentkeep.rbac.dependencies import PermissionCheck
from agentkeep.rbac.permissions import Permission


class SignInRequired(Exception):
    """No live session: the console answers with the sign-in page (see pages/errors.py)."""


async def console_principal(request: Request, session: SessionDep) -> Principal:
    if request.method in csrf.UNSAFE_METHODS:
        csrf.check_origin(request)
    codec = token_codec_of(request)
    cache = request.app.state.session_cache
    access = read_cookie(request, ACCESS)
    try:
        found = await authenticate_access_token(session, codec, access, cache)
    except InvalidAccessToken as exc:
        refresh = read_cookie(request, REFRESH)
        if exc.reason != "ExpiredSignatureError" or refresh is None:
            if access is not None:
                forget_tokens(request)
            raise SignInRequired from None
        try:
            issued = await request.app.state.console_refresh.rotate(request, refresh)
        except (RefreshRejected, InvalidAccessToken):
            forget_tokens(request)
            raise SignInRequired from None
        store_tokens(request, issued)
        found = await authenticate_access_token(session, codec, issued.access_token, cache)
    principal = session_principal(found)
    request_slot(request)["principal"] = principal
    if request.method in csrf.UNSAFE_METHODS:
        await csrf.check_token(request, csrf.session_token(request.app.state.settings, found.session_id))
    await enforce_principal_limit(request, principal.limit_key)
    return principal


ConsolePrincipal = Annotated[Principal, Depends(console_principal)]


class PagePermission(PermissionCheck):
    """`require(permission)` for console pages: the same check, audit record and 403."""

    async def __call__(self, request: Request, principal: ConsolePrincipal, session: SessionDep) -> Principal:
        return await self.check(request, principal, session)


def page_permission(permission: Permission) -> PagePermission:
    return PagePermission(permission)


async def signed_in(principal: ConsolePrincipal) -> Principal:
    """Marker: any signed-in user (pages about the caller, not an organization)."""
    return principal


async def anonymous(request: Request) -> None:
    """Marker: no session needed (sign in, register, static files). A state-changing
    anonymous form checks its own pre-session token (pages/auth.py)."""
    if request.method in csrf.UNSAFE_METHODS:
        csrf.check_origin(request)


SignedIn = Annotated[Principal, Depends(signed_in)]
Anonymous = Depends(anonymous)
