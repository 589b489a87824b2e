"""A provider that cannot be reached, answers with errors, or sits where the guard refuses."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.sso.conftest import PROVIDER, SsoAppFactory, provider_entry
from tests.sso.peer import OpenIdProvider
from tests.support.chat_server import ChatServer, running_chat_server
from tests.support.throwaway import free_port

pytestmark = pytest.mark.slow

PROBLEM = "urn:agentkeep:problem:"


async def test_a_provider_that_is_down_is_a_503_with_retry_after(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with sso_app([provider_entry(op, issuer=nowhere)]) as sso:
        response = await sso.client.get(f"/auth/oidc/{PROVIDER}/login")
    assert response.status_code == 503
    assert response.json()["type"] == PROBLEM + "oidc-provider-unavailable"
    assert "Retry-After" in response.headers


class FailingProvider(ChatServer):
    """A provider host whose discovery endpoint fails with HTTP 500."""

    def app(self) -> Starlette:
        async def broken(_: object) -> PlainTextResponse:
            return PlainTextResponse("internal error", status_code=500)

        return Starlette(routes=[Route("/.well-known/openid-configuration", broken)])


async def test_a_provider_answering_errors_is_a_502(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    with running_chat_server(chat=FailingProvider(script=[])) as broken:
        async with sso_app([provider_entry(op, issuer=broken.base_url.removesuffix("/v1"))]) as sso:
            response = await sso.client.get(f"/auth/oidc/{PROVIDER}/login")
    assert response.status_code == 502
    assert response.json()["type"] == PROBLEM + "oidc-provider-error"


async def test_a_provider_on_a_private_address_needs_the_allowlist(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    async with sso_app([provider_entry(op)], oidc_allowed_networks=[]) as sso:
        response = await sso.client.get(f"/auth/oidc/{PROVIDER}/login")
    assert response.status_code == 503
    assert response.json()["type"] == PROBLEM + "oidc-provider-unavailable"
    assert "OIDC_ALLOWED_NETWORKS" in response.json()["detail"]


async def test_an_unknown_provider_is_a_404(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    async with sso_app([provider_entry(op)]) as sso:
        response = await sso.client.get("/auth/oidc/nope/login")
    assert response.status_code == 404
    assert response.json()["type"] == PROBLEM + "oidc-unknown-provider"
