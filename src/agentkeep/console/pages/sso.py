"""Sign in to the console through a single sign-on provider: the API's OIDC login service
(docs/sso.md) with the console's own callback, ending in the console's cookie session.

The flow is the API's (state, nonce, PKCE S256, a single-use login bound to this browser by
an httpOnly cookie); only its ends differ: the callback stores the tokens as the console's
session cookies instead of answering them as JSON. The console's cookies are SameSite=Strict,
and a browser does not send those on a navigation that began at another site (the provider's
redirect back), so the callback answers a page that moves on to the console by itself: that
next navigation starts here, and the new session's cookies go with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import urljoin

from fastapi import Path, Query, Request
from starlette.responses import RedirectResponse, Response

from agentkeep.auth.router import AUTH_LIMIT, NO_STORE
from agentkeep.console.access import Anonymous
from agentkeep.console.pages.auth import safe_next
from agentkeep.console.route import console_router
from agentkeep.console.session import CookiePolicy, cookie_policy, pending_cookies, read_cookie, store_tokens
from agentkeep.console.templating import render
from agentkeep.sso.dependencies import OidcClientsDep, OidcLoginServiceDep
from agentkeep.sso.router import COOKIE_MAX_AGE, PARAM_MAX, ProviderName
from agentkeep.sso.service import CallbackParams

router = console_router()

# The browser binding of a pending console login, and where it goes after.
BINDING = "agentkeep_console_oidc"
NEXT = "agentkeep_console_oidc_next"
CALLBACK_PATH = "/login/oidc/{provider}/callback"


def console_callback_url(request: Request, clients: OidcClientsDep, provider: str) -> str:
    """The console's callback at this site; behind a proxy, at the host of the provider's
    configured (API) redirect URI. Both are registered at the provider (docs/sso.md)."""
    path = CALLBACK_PATH.format(provider=provider)
    client = clients.get(provider)
    if client is not None and client.config.redirect_uri:
        return urljoin(client.config.redirect_uri, path)
    return str(request.base_url).rstrip("/") + path


def _forget_pending_login(policy: CookiePolicy) -> Callable[[Response], None]:
    def forget(response: Response) -> None:
        for name in (BINDING, NEXT):
            response.delete_cookie(policy.name(name), path="/")

    return forget


@router.get("/login/oidc/{provider}", dependencies=[Anonymous, AUTH_LIMIT])
async def start(
    provider: ProviderName,
    request: Request,
    service: OidcLoginServiceDep,
    clients: OidcClientsDep,
    next: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    started = await service.start(provider, console_callback_url(request, clients, provider))
    policy = cookie_policy(request)
    response = RedirectResponse(started.authorization_url, status_code=302, headers=NO_STORE)
    # Lax, not the session's Strict: the binding must come back with the provider's redirect.
    for name, value in ((BINDING, started.browser_binding), (NEXT, safe_next(next))):
        response.set_cookie(
            policy.name(name),
            value,
            max_age=COOKIE_MAX_AGE,
            path="/",
            secure=policy.secure,
            httponly=True,
            samesite="lax",
        )
    return response


@router.get("/login/oidc/{provider}/callback", dependencies=[Anonymous, AUTH_LIMIT])
async def callback(
    provider: Annotated[str, Path(max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]*$")],
    request: Request,
    service: OidcLoginServiceDep,
    state: Annotated[str | None, Query(max_length=PARAM_MAX)] = None,
    code: Annotated[str | None, Query(max_length=PARAM_MAX)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    error_description: Annotated[str | None, Query(max_length=PARAM_MAX)] = None,
) -> Response:
    params = CallbackParams(state=state, code=code, error=error, error_description=error_description)
    issued = await service.complete(provider, params, read_cookie(request, BINDING))
    store_tokens(request, issued)
    pending_cookies(request).append(_forget_pending_login(cookie_policy(request)))
    return render(request, "auth/sso_done.html", {"next": safe_next(read_cookie(request, NEXT))})
