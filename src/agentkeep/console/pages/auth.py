"""Sign in, sign out, register (when open), change password, switch organization, and the
home page. Each action is the /auth endpoint's service call, with cookies instead of a
token response."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Form, Request
from starlette.responses import Response

from agentkeep.auth.dependencies import AuthServiceDep
from agentkeep.auth.router import AUTH_LIMIT
from agentkeep.auth.schemas import LoginForm, PasswordChangeRequest, RegisterRequest
from agentkeep.console import csrf
from agentkeep.console.access import Anonymous, SignedIn
from agentkeep.console.route import console_router
from agentkeep.console.session import (
    PRESESSION,
    cookie_policy,
    forget_tokens,
    pending_cookies,
    read_cookie,
    request_slot,
    store_tokens,
)
from agentkeep.console.templating import redirect, render
from agentkeep.context import RequestContextDep
from agentkeep.orgs.router import OrgServiceDep
from agentkeep.sso.service import provider_names

router = console_router()

PRESESSION_SECONDS = 3600


def safe_next(value: str | None) -> str:
    """Only a path of this site: never `//host`, a scheme or a backslash trick."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _with_presession(request: Request) -> str:
    """The sign-in form's CSRF token, bound to a random value in a cookie of its own."""
    nonce = read_cookie(request, PRESESSION)
    if nonce is None:
        nonce = secrets.token_urlsafe(24)
        policy = cookie_policy(request)
        value = nonce
        pending_cookies(request).append(
            lambda response: policy.set(response, PRESESSION, value, PRESESSION_SECONDS)
        )
    token = csrf.presession_token(request.app.state.settings, nonce)
    request_slot(request)["presession_csrf"] = token
    return token


async def _check_presession(request: Request) -> None:
    nonce = read_cookie(request, PRESESSION)
    if nonce is None:
        raise csrf.CsrfRefused("The form has expired; reload the page and try again.")
    await csrf.check_token(request, csrf.presession_token(request.app.state.settings, nonce))


PresessionChecked = Depends(_check_presession)


@router.get("/login", dependencies=[Anonymous])
async def login_page(request: Request, next: str | None = None, changed: bool = False) -> Response:
    _with_presession(request)
    providers = provider_names(request.app.state.oidc_clients)
    return render(
        request, "auth/login.html", {"next": safe_next(next), "changed": changed, "providers": providers}
    )


@router.post("/login", dependencies=[Anonymous, AUTH_LIMIT, PresessionChecked])
async def login(
    request: Request,
    service: AuthServiceDep,
    context: RequestContextDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    form = LoginForm(username=username, password=password)
    issued = await service.login(form.username, form.password, context)
    store_tokens(request, issued)
    return redirect(request, safe_next(next))


@router.post("/logout")
async def logout(request: Request, principal: SignedIn, service: AuthServiceDep) -> Response:
    assert principal.session_id is not None  # console sessions are login sessions
    await service.logout(principal.user_id, principal.session_id)
    forget_tokens(request)
    return redirect(request, "/login")


@router.get("/register", dependencies=[Anonymous])
async def register_page(request: Request) -> Response:
    _with_presession(request)
    return render(request, "auth/register.html")


@router.post("/register", dependencies=[Anonymous, AUTH_LIMIT, PresessionChecked])
async def register(
    request: Request,
    service: AuthServiceDep,
    context: RequestContextDep,
    username: Annotated[str, Form()],
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
) -> Response:
    body = RegisterRequest(username=username, email=email, password=password)
    await service.register(body.username, body.email, body.password, context)
    issued = await service.login(body.username, body.password, context)
    store_tokens(request, issued)
    return redirect(request, "/")


@router.get("/")
async def home(request: Request, principal: SignedIn, orgs: OrgServiceDep) -> Response:
    mine = await orgs.list_mine(principal.user_id)
    current = next((org for org, _ in mine if org.id == principal.org_id), None)
    return render(request, "auth/home.html", {"orgs": mine, "current_org": current})


@router.get("/account")
async def account_page(request: Request, principal: SignedIn, orgs: OrgServiceDep) -> Response:
    mine = await orgs.list_mine(principal.user_id)
    return render(request, "auth/account.html", {"orgs": mine})


@router.post("/account/password")
async def change_password(
    request: Request,
    principal: SignedIn,
    service: AuthServiceDep,
    current_password: Annotated[str, Form()],
    new_password: Annotated[str, Form()],
) -> Response:
    body = PasswordChangeRequest(current_password=current_password, new_password=new_password)
    await service.change_password(principal.user_id, body.current_password, body.new_password)
    # Every session of the user ended, this one too: sign in again with the new password.
    forget_tokens(request)
    return redirect(request, "/login?changed=1")


@router.post("/account/org")
async def switch_org(
    request: Request, principal: SignedIn, service: AuthServiceDep, org: Annotated[str, Form(max_length=80)]
) -> Response:
    assert principal.session_id is not None
    issued = await service.switch_org(principal.user_id, principal.session_id, org)
    store_tokens(request, issued)
    return redirect(request, "/")
