"""HTTP endpoints under /auth: parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.responses import JSONResponse

from agentkeep.auth.dependencies import AuthServiceDep, Principal
from agentkeep.auth.errors import RefreshRejected, SessionRequired
from agentkeep.auth.schemas import (
    LoginForm,
    PasswordChangeRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
)
from agentkeep.auth.service import IssuedTokens
from agentkeep.context import RequestContextDep
from agentkeep.errors import InvalidInput, problem_response
from agentkeep.orgs.schemas import SwitchOrgRequest
from agentkeep.ratelimit.dependency import rate_limit
from agentkeep.ratelimit.rules import RuleName
from agentkeep.rbac.dependencies import Authenticated, Public
from agentkeep.users.schemas import UserRead

router = APIRouter(prefix="/auth", tags=["auth"])

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def require_form_body(request: Request) -> None:
    """Explain the OAuth2 form to a client that sent JSON, instead of a bare schema error."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORM_TYPES:
        raise InvalidInput(
            "POST /auth/login takes an OAuth2 password form, not "
            f"{content_type or 'an empty body'}: send Content-Type "
            "application/x-www-form-urlencoded with username=...&password=... "
            "(curl -d 'username=alice&password=...').",
        )


def _session_of(principal: Principal) -> uuid.UUID:
    if principal.session_id is None:
        raise SessionRequired("This endpoint needs a login session, not an API key.")
    return principal.session_id


def _token_response(issued: IssuedTokens, response: Response) -> TokenResponse:
    response.headers.update(NO_STORE)
    return TokenResponse(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
        refresh_expires_in=issued.refresh_expires_in,
    )


# The fixes report's limit: register and login per client IP (RATE_LIMIT_AUTH, 5/minute).
AUTH_LIMIT = Depends(rate_limit(RuleName.AUTH, report_remaining=True))


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    dependencies=[Public, AUTH_LIMIT],
    responses={
        403: {"description": "Self-registration is closed on this server."},
        409: {"description": "The username or email is already registered."},
    },
)
async def register(body: RegisterRequest, service: AuthServiceDep, context: RequestContextDep) -> UserRead:
    """Create an account (username, email, password); answers the new user."""
    user = await service.register(body.username, body.email, body.password, context)
    return UserRead.model_validate(user)


@router.post(
    "/login",
    response_model=TokenResponse,
    dependencies=[Public, AUTH_LIMIT, Depends(require_form_body)],
    responses={401: {"description": "Incorrect username or password (or a locked or disabled account)."}},
)
async def login(
    form: Annotated[LoginForm, Form()],
    service: AuthServiceDep,
    context: RequestContextDep,
    response: Response,
) -> TokenResponse:
    """Exchange a username (or email) and password for an access and a refresh token, acting
    in `org` (id or slug; default: the personal organization)."""
    issued = await service.login(form.username, form.password, context, form.org)
    return _token_response(issued, response)


@router.post(
    "/refresh",
    response_model=TokenResponse,
    dependencies=[Public],
    responses={401: {"description": "The refresh token is invalid, expired, used or revoked."}},
)
async def refresh(
    body: RefreshRequest,
    service: AuthServiceDep,
    context: RequestContextDep,
    request: Request,
    response: Response,
) -> TokenResponse | JSONResponse:
    """Rotate a refresh token: the presented one stops working and a new pair is issued."""
    try:
        issued = await service.refresh(body.refresh_token, context)
    except RefreshRejected as exc:
        if not exc.family_revoked:
            raise
        # Answered, not raised, so the request's transaction commits the family revocation.
        return problem_response(
            request,
            exc.status_code,
            title=exc.title,
            detail=exc.detail,
            type_slug=exc.type_slug,
            headers={**exc.headers, **NO_STORE},
        )
    return _token_response(issued, response)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: Authenticated, service: AuthServiceDep) -> None:
    """End the current session: its refresh token and every access token of it stop working."""
    await service.logout(principal.user_id, _session_of(principal))


@router.post(
    "/switch-org",
    response_model=TokenResponse,
    responses={404: {"description": "No such organization, or the caller is not a member there."}},
)
async def switch_org(
    body: SwitchOrgRequest, principal: Authenticated, service: AuthServiceDep, response: Response
) -> TokenResponse:
    """Act in another organization you belong to: a new token pair for the same session;
    tokens issued before stop working. 404 when you are not a member there."""
    issued = await service.switch_org(principal.user_id, _session_of(principal), body.org)
    return _token_response(issued, response)


@router.get("/me", response_model=UserRead)
async def me(principal: Authenticated) -> UserRead:
    """The authenticated user."""
    return UserRead.model_validate(principal.user)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChangeRequest, principal: Authenticated, service: AuthServiceDep
) -> None:
    """Change the password; every session of the user ends, this one included."""
    await service.change_password(principal.user_id, body.current_password, body.new_password)
