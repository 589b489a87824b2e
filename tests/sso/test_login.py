"""Signing in through a real OpenID provider: provisioning, identity, tokens like a password login."""

from __future__ import annotations

import pytest

from tests.sso.browser import sign_in
from tests.sso.conftest import PROVIDER, SsoAppFactory, bearer, provider_entry
from tests.sso.peer import OpenIdProvider

pytestmark = pytest.mark.slow


async def test_providers_are_listed_with_their_login_url(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    async with sso_app([provider_entry(op)]) as sso:
        response = await sso.client.get("/auth/oidc/providers")
    assert response.status_code == 200
    assert response.json() == [
        {"name": PROVIDER, "display_name": "Test provider", "login_url": f"/auth/oidc/{PROVIDER}/login"}
    ]


async def test_login_redirects_with_state_nonce_and_pkce_s256(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    async with sso_app([provider_entry(op)]) as sso:
        response = await sso.client.get(f"/auth/oidc/{PROVIDER}/login")
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(f"{op.url}/auth?")
    for parameter in (
        "state=",
        "nonce=",
        "code_challenge=",
        "code_challenge_method=S256",
        "response_type=code",
    ):
        assert parameter in location
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/auth/oidc" in cookie


async def test_first_login_provisions_the_user_and_issues_password_login_tokens(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    subject = op.add_user("carol", email="Carol@Example.com")
    async with sso_app([provider_entry(op)]) as sso:
        signed = await sign_in(sso.client, PROVIDER, "carol")
        assert signed.response.status_code == 200, signed.response.text
        tokens = signed.response.json()
        assert set(tokens) == {
            "access_token",
            "refresh_token",
            "token_type",
            "expires_in",
            "refresh_expires_in",
        }
        assert signed.response.headers["cache-control"] == "no-store"
        me = await sso.client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        assert (me.json()["username"], me.json()["email"]) == ("carol", "carol@example.com")
        identities = await sso.sql("SELECT issuer, subject, provider FROM user_identities")
        assert [tuple(row) for row in identities] == [(op.issuer, subject, PROVIDER)]
        provisioned = await sso.audit("sso_user_provisioned")
        assert len(provisioned) == 1
        assert provisioned[0].details["linked"] is False
        assert [row.status for row in await sso.audit("sso_login_success")] == ["success"]
        # Refresh and logout work as for a password login.
        refreshed = await sso.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        new_access = refreshed.json()["access_token"]
        assert (await sso.client.post("/auth/logout", headers=bearer(new_access))).status_code == 204
        assert (await sso.client.get("/auth/me", headers=bearer(new_access))).status_code == 401


async def test_the_identity_is_issuer_and_subject_not_the_email(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    op.add_user("dave", email="dave@example.com")
    async with sso_app([provider_entry(op)]) as sso:
        first = (await sign_in(sso.client, PROVIDER, "dave")).response.json()
        user_id = (await sso.client.get("/auth/me", headers=bearer(first["access_token"]))).json()["id"]
        op.accounts["dave"]["claims"]["email"] = "dave.new@example.com"
        op.set_groups("dave", [])
        second = await sign_in(sso.client, PROVIDER, "dave")
        assert second.response.status_code == 200
        me = await sso.client.get("/auth/me", headers=bearer(second.response.json()["access_token"]))
        assert me.json()["id"] == user_id
        assert len(await sso.audit("sso_user_provisioned")) == 1
        assert len(await sso.audit("sso_login_success")) == 2


async def test_the_same_email_from_another_subject_is_not_the_same_person(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    op.add_user("erin", email="erin@example.com")
    op.add_user("mallory", email="erin@example.com")
    async with sso_app([provider_entry(op)]) as sso:
        assert (await sign_in(sso.client, PROVIDER, "erin")).response.status_code == 200
        taken = await sign_in(sso.client, PROVIDER, "mallory")
    assert taken.response.status_code == 409
    assert taken.response.json()["type"] == "urn:agentkeep:problem:oidc-account-exists"


async def test_login_acts_in_the_requested_organization(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    op.add_user("frank", groups=["eng"])
    mapping = [{"group": "eng", "org": "acme", "role": "member"}]
    async with sso_app([provider_entry(op, role_mappings=mapping)]) as sso:
        acme = await sso.create_org("acme")
        signed = await sign_in(sso.client, PROVIDER, "frank", org="acme")
        assert signed.response.status_code == 200, signed.response.text
        org = await sso.client.get(
            f"/api/orgs/{acme}", headers=bearer(signed.response.json()["access_token"])
        )
        assert org.status_code == 200
        refused = await sign_in(sso.client, PROVIDER, "frank", org="not-mine")
    assert refused.response.status_code == 403
    assert refused.response.json()["type"] == "urn:agentkeep:problem:oidc-not-a-member"
