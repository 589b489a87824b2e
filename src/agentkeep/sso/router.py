"""HTTP endpoints of single sign-on under /auth/oidc: the browser redirect and the callback.

The callback answers the same TokenResponse as POST /auth/login. The pending login is bound
to the browser by an httpOnly cookie set with the redirect, so a callback URL opened in
another browser (a login CSRF, or a stolen link) is refused.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from agentkeep.auth.router import AUTH_LIMIT, NO_STORE
from agentkeep.auth.schemas import TokenResponse
from agentkeep.dependencies import SettingsDep
from agentkeep.rbac.dependencies import Public
from agentkeep.sso.dependencies import OidcClientsDep, OidcLoginServiceDep
from agentkeep.sso.schemas import ProviderRead
from agentkeep.sso.service import CallbackParams, provider_names

router = APIRouter(prefix="/auth/oidc", tags=["auth"])

BINDING_COOKIE = "agentkeep_oidc"
COOKIE_PATH = "/auth/oidc"
COOKIE_MAX_AGE = 600
PARAM_MAX = 4096
ProviderName = Annotated[str, Path(max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


def callback_url(request: Request, clients: OidcClientsDep, provider: str) -> str:
    client = clients.get(provider)
    if client is not None and client.config.redirect_uri:
        return client.config.redirect_uri
    return str(request.url_for("oidc_callback", provider=provider))


@router.get("/providers", response_model=list[ProviderRead], dependencies=[Public])
async def list_providers(clients: OidcClientsDep) -> list[ProviderRead]:
    """The single sign-on providers this server offers (name and display name)."""
    return [
        ProviderRead(name=name, display_name=label, login_url=f"/auth/oidc/{name}/login")
        for name, label in provider_names(clients)
    ]


@router.get(
    "/{provider}/login",
    status_code=status.HTTP_302_FOUND,
    dependencies=[Public, AUTH_LIMIT],
    response_class=RedirectResponse,
    responses={
        302: {"description": "Redirect to the provider's login page."},
        404: {"description": "No such provider."},
    },
)
async def login(
    provider: ProviderName,
    request: Request,
    service: OidcLoginServiceDep,
    clients: OidcClientsDep,
    settings: SettingsDep,
    org: Annotated[str | None, Query(min_length=1, max_length=80)] = None,
) -> RedirectResponse:
    """Start a single sign-on: redirect to the provider (state, nonce and PKCE S256); the
    session will act in `org` (id or slug; default: the personal organization)."""
    started = await service.start(provider, callback_url(request, clients, provider), org)
    response = RedirectResponse(
        started.authorization_url, status_code=status.HTTP_302_FOUND, headers=NO_STORE
    )
    response.set_cookie(
        BINDING_COOKIE,
        started.browser_binding,
        max_age=COOKIE_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        # Behind a TLS-terminating proxy the request looks like http: production always says Secure.
        secure=request.url.scheme == "https" or settings.environment == "production",
        # Lax: sent on the provider's top-level redirect back, never on cross-site subrequests.
        samesite="lax",
    )
    return response


@router.get(
    "/{provider}/callback",
    name="oidc_callback",
    response_model=TokenResponse,
    dependencies=[Public, AUTH_LIMIT],
    responses={
        400: {"description": "State mismatch: unknown, used, expired or from another browser."},
        401: {"description": "The provider's answer or ID token was refused (see the problem type)."},
        403: {"description": "Email not verified for linking, or account disabled."},
        409: {"description": "An unlinked account already holds this email."},
        502: {"description": "The provider answered with an error."},
    },
)
async def callback(
    provider: ProviderName,
    request: Request,
    response: Response,
    service: OidcLoginServiceDep,
    state: Annotated[str | None, Query(max_length=PARAM_MAX)] = None,
    code: Annotated[str | None, Query(max_length=PARAM_MAX)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    error_description: Annotated[str | None, Query(max_length=PARAM_MAX)] = None,
) -> TokenResponse:
    """Finish a single sign-on: the provider redirects here; answers the same tokens as
    POST /auth/login (refresh with POST /auth/refresh)."""
    params = CallbackParams(state=state, code=code, error=error, error_description=error_description)
    issued = await service.complete(provider, params, request.cookies.get(BINDING_COOKIE))
    response.headers.update(NO_STORE)
    response.delete_cookie(BINDING_COOKIE, path=COOKIE_PATH)
    return TokenResponse(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
        refresh_expires_in=issued.refresh_expires_in,
    )
