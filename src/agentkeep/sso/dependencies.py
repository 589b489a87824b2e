"""FastAPI dependencies of single sign-on: the configured clients and the login service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentkeep.audit.service import audit_service_for
from agentkeep.auth.dependencies import token_codec_of
from agentkeep.auth.service import AuthService
from agentkeep.db.session import WriteSessionDep, sessionmaker_of
from agentkeep.sso.client import OidcClient
from agentkeep.sso.service import OidcLoginService


def oidc_clients_of(request: Request) -> dict[str, OidcClient]:
    clients: dict[str, OidcClient] = request.app.state.oidc_clients
    return clients


async def get_oidc_clients(request: Request) -> dict[str, OidcClient]:
    return oidc_clients_of(request)


OidcClientsDep = Annotated[dict[str, OidcClient], Depends(get_oidc_clients)]


async def get_oidc_login_service(request: Request, session: WriteSessionDep) -> OidcLoginService:
    # The login and callback are GET requests that write: every collaborator shares this
    # one transactional session (not the read-only session GET requests otherwise get).
    state = request.app.state
    audit = audit_service_for(request, session)
    auth = AuthService(
        session,
        state.settings,
        state.password_hasher,
        token_codec_of(request),
        audit,
        state.login_throttle,
        state.metrics,
    )
    return OidcLoginService(
        session, sessionmaker_of(request), oidc_clients_of(request), auth, state.password_hasher, audit
    )


OidcLoginServiceDep = Annotated[OidcLoginService, Depends(get_oidc_login_service)]
