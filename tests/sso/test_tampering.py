"""What the client refuses: altered state, nonce and PKCE, foreign keys, issuers and audiences,
tokens from a provider whose clock is off. Each case uses the real provider; where it cannot
be made to misbehave, a second provider process or an attacker-in-the-middle proxy does it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.sso.browser import APP_ORIGIN, provider_round_trip, replace_query, sign_in
from tests.sso.conftest import PROVIDER, SsoAppFactory, provider_entry
from tests.sso.peer import CLIENT_ID, OTHER_CLIENT_ID, OpenIdProvider
from tests.sso.tamper_proxy import TamperProxy, bound_socket, running_proxy

pytestmark = pytest.mark.slow

PROBLEM = "urn:agentkeep:problem:"


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    """The tampering proxy's socket, bound before the provider starts (it must know the
    proxy's URL); closed here too, should the provider never start."""
    bound = bound_socket()
    yield bound
    bound.close()


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["type"]).removeprefix(PROBLEM)


def s256(verifier: str) -> str:
    """RFC 7636 4.2: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def failed_reasons(sso: object) -> list[str]:
    from tests.sso.conftest import SsoApp

    assert isinstance(sso, SsoApp)
    return [row.details["reason"] for row in await sso.audit("sso_login_failed")]


async def test_a_tampered_state_is_refused(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    op.add_user("state-user")
    async with sso_app([provider_entry(op)]) as sso:
        forged = secrets.token_urlsafe(32)
        signed = await sign_in(
            sso.client, PROVIDER, "state-user", tamper_callback=lambda url: replace_query(url, state=forged)
        )
        assert signed.response.status_code == 400
        assert problem_type(signed.response) == "oidc-state-mismatch"
        assert await failed_reasons(sso) == ["state_mismatch"]
        assert await sso.sql("SELECT id FROM users") == []


async def test_a_callback_serves_once(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    op.add_user("replay-user")
    async with sso_app([provider_entry(op)]) as sso:
        signed = await sign_in(sso.client, PROVIDER, "replay-user")
        assert signed.response.status_code == 200
        replayed = await sso.client.get(signed.callback_url.removeprefix(APP_ORIGIN))
        assert replayed.status_code == 400
        assert problem_type(replayed) == "oidc-state-mismatch"


async def test_a_callback_from_another_browser_is_refused(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    """Login CSRF: the attacker's own callback URL, opened in the victim's browser."""
    op.add_user("csrf-attacker")
    async with sso_app([provider_entry(op)]) as sso:
        started = await sso.client.get(f"/auth/oidc/{PROVIDER}/login")
        callback = await provider_round_trip(started.headers["location"], "csrf-attacker")
        victim = httpx.AsyncClient(transport=sso.client._transport, base_url=APP_ORIGIN)
        async with victim:
            response = await victim.get(callback.removeprefix(APP_ORIGIN))
        assert response.status_code == 400
        assert problem_type(response) == "oidc-state-mismatch"
        assert "another browser" in response.json()["detail"]


async def test_a_nonce_altered_on_its_way_is_refused(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    op.add_user("nonce-user")
    async with sso_app([provider_entry(op)]) as sso:
        signed = await sign_in(
            sso.client,
            PROVIDER,
            "nonce-user",
            tamper_authorization=lambda url: replace_query(url, nonce=secrets.token_urlsafe(16)),
        )
        assert signed.response.status_code == 401
        assert problem_type(signed.response) == "oidc-nonce-mismatch"
        assert await failed_reasons(sso) == ["nonce_mismatch"]


async def test_a_pkce_challenge_altered_on_its_way_is_refused(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    """oidc-provider answers a PKCE mismatch with a bare invalid_grant ("grant request is
    invalid", RFC 7636 4.6), so the problem is the generic code refusal naming PKCE; providers
    that say why (Keycloak, Okta, Entra ID) get oidc-pkce-failed (test_errors.py)."""
    op.add_user("pkce-user")
    attacker_challenge = s256(secrets.token_urlsafe(48))
    async with sso_app([provider_entry(op)]) as sso:
        signed = await sign_in(
            sso.client,
            PROVIDER,
            "pkce-user",
            tamper_authorization=lambda url: replace_query(url, code_challenge=attacker_challenge),
        )
        assert signed.response.status_code == 401
        assert problem_type(signed.response) == "oidc-code-rejected"
        assert "PKCE" in signed.response.json()["detail"]
        assert await failed_reasons(sso) == ["code_rejected"]
        assert await sso.sql("SELECT id FROM users") == []


async def test_the_provider_refusing_the_login_is_reported(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    async with sso_app([provider_entry(op)]) as sso:
        started = await sso.client.get(f"/auth/oidc/{PROVIDER}/login")
        state = httpx.URL(started.headers["location"]).params["state"]
        response = await sso.client.get(
            f"/auth/oidc/{PROVIDER}/callback", params={"state": state, "error": "access_denied"}
        )
    assert response.status_code == 401
    assert problem_type(response) == "oidc-provider-refused"


ProxyFactory = Callable[..., TamperProxy]


async def test_an_id_token_signed_by_a_key_the_provider_does_not_publish_is_refused(
    sso_app: SsoAppFactory, start_provider: Callable[..., OpenIdProvider], sock: socket.socket
) -> None:
    front = f"http://127.0.0.1:{sock.getsockname()[1]}"
    signer = start_provider(issuer=front)
    attacker = start_provider()
    signer.add_user("key-user")
    with running_proxy(TamperProxy(upstream=signer.url, jwks_from=f"{attacker.url}/jwks"), sock):
        async with sso_app([provider_entry(signer)]) as sso:
            signed = await sign_in(sso.client, PROVIDER, "key-user")
            assert signed.response.status_code == 401
            assert problem_type(signed.response) == "oidc-unknown-signing-key"
            assert await failed_reasons(sso) == ["unknown_signing_key"]


async def test_an_id_token_from_another_issuer_is_refused(
    sso_app: SsoAppFactory, start_provider: Callable[..., OpenIdProvider], sock: socket.socket
) -> None:
    """Discovery (altered in transit) names the expected issuer; the token names its real one."""
    front = f"http://127.0.0.1:{sock.getsockname()[1]}"
    real = start_provider()
    real.add_user("issuer-user")
    with running_proxy(TamperProxy(upstream=real.url, issuer=front), sock):
        async with sso_app([provider_entry(real, issuer=front)]) as sso:
            signed = await sign_in(sso.client, PROVIDER, "issuer-user")
            assert signed.response.status_code == 401
            assert problem_type(signed.response) == "oidc-wrong-issuer"


async def test_a_discovery_document_naming_another_issuer_is_refused(
    sso_app: SsoAppFactory, start_provider: Callable[..., OpenIdProvider]
) -> None:
    elsewhere = start_provider(issuer="https://idp.example.test/realms/other")
    async with sso_app([provider_entry(elsewhere, issuer=elsewhere.url)]) as sso:
        response = await sso.client.get(f"/auth/oidc/{PROVIDER}/login")
    assert response.status_code == 401
    assert problem_type(response) == "oidc-wrong-issuer"
    assert "https://idp.example.test/realms/other" in response.json()["detail"]


async def test_an_id_token_issued_to_another_client_is_refused(
    sso_app: SsoAppFactory, start_provider: Callable[..., OpenIdProvider], sock: socket.socket
) -> None:
    front = f"http://127.0.0.1:{sock.getsockname()[1]}"
    real = start_provider(issuer=front)
    real.add_user("audience-user")
    swap = ((CLIENT_ID, real.client_secret), (OTHER_CLIENT_ID, real.other_client_secret))
    with running_proxy(TamperProxy(upstream=real.url, swap_client=swap), sock):
        async with sso_app([provider_entry(real)]) as sso:
            signed = await sign_in(sso.client, PROVIDER, "audience-user")
            assert signed.response.status_code == 401
            assert problem_type(signed.response) == "oidc-wrong-audience"


async def test_an_expired_id_token_is_refused(
    sso_app: SsoAppFactory, start_provider: Callable[..., OpenIdProvider]
) -> None:
    """The provider's clock is five minutes behind and its ID tokens live one minute: a fresh
    token expired four minutes ago here, beyond the one minute of leeway. (Its login cookies
    live ten minutes, so the browser still keeps them.)"""
    late = start_provider(clock_offset="-5m", id_token_ttl=60)
    late.add_user("late-user")
    async with sso_app([provider_entry(late)]) as sso:
        signed = await sign_in(sso.client, PROVIDER, "late-user")
        assert signed.response.status_code == 401
        assert problem_type(signed.response) == "oidc-token-expired"
        assert "clock" in signed.response.json()["detail"]
        assert await failed_reasons(sso) == ["token_expired"]


async def test_an_id_token_from_the_future_is_reported_as_clock_skew(
    sso_app: SsoAppFactory, start_provider: Callable[..., OpenIdProvider]
) -> None:
    early = start_provider(clock_offset="+2h")
    early.add_user("early-user")
    async with sso_app([provider_entry(early)]) as sso:
        signed = await sign_in(sso.client, PROVIDER, "early-user")
        assert signed.response.status_code == 401
        assert problem_type(signed.response) == "oidc-clock-skew"
