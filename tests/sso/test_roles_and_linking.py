"""Group -> organization role mapping at every login, and linking to existing accounts."""

from __future__ import annotations

import pytest

from tests.sso.browser import sign_in
from tests.sso.conftest import PROVIDER, SsoAppFactory, bearer, provider_entry
from tests.sso.peer import OpenIdProvider

pytestmark = pytest.mark.slow

MAPPINGS = [
    {"group": "acme-admins", "org": "acme", "role": "admin"},
    {"group": "acme-eng", "org": "acme", "role": "member"},
]
PROBLEM = "urn:agentkeep:problem:"


async def test_group_mapping_adds_changes_and_removes_the_role_at_each_login(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    op.add_user("grace", groups=["acme-eng"])
    async with sso_app([provider_entry(op, role_mappings=MAPPINGS)]) as sso:
        await sso.create_org("acme")
        first = (await sign_in(sso.client, PROVIDER, "grace")).response.json()
        assert await sso.roles(first["access_token"]) == {"acme": "member"}

        op.set_groups("grace", ["acme-eng", "acme-admins"])
        second = (await sign_in(sso.client, PROVIDER, "grace")).response.json()
        assert await sso.roles(second["access_token"]) == {"acme": "admin"}

        op.set_groups("grace", ["somewhere-else"])
        third = (await sign_in(sso.client, PROVIDER, "grace")).response.json()
        assert await sso.roles(third["access_token"]) == {}
        # Removal takes effect on sessions opened before too (roles are read per request).
        assert (await sso.client.get("/api/orgs", headers=bearer(first["access_token"]))).status_code == 200

        changes = [(row.details["from"], row.details["to"]) for row in await sso.audit("role_changed_by_sso")]
        assert changes == [(None, "member"), ("member", "admin"), ("admin", None)]


async def test_role_loss_revokes_the_other_sessions_when_configured(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    op.add_user("heidi", groups=["acme-eng"])
    provider = provider_entry(op, role_mappings=MAPPINGS, revoke_sessions_on_role_loss=True)
    async with sso_app([provider]) as sso:
        await sso.create_org("acme")
        before = (await sign_in(sso.client, PROVIDER, "heidi")).response.json()
        op.set_groups("heidi", [])
        after = (await sign_in(sso.client, PROVIDER, "heidi")).response.json()
        assert (await sso.client.get("/auth/me", headers=bearer(before["access_token"]))).status_code == 401
        refreshed = await sso.client.post("/auth/refresh", json={"refresh_token": before["refresh_token"]})
        assert refreshed.status_code == 401
        assert (await sso.client.get("/auth/me", headers=bearer(after["access_token"]))).status_code == 200
        loss = (await sso.audit("role_changed_by_sso"))[-1]
        assert loss.details["sessions_revoked"] is True


async def test_a_role_loss_without_the_option_keeps_the_sessions(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    op.add_user("ivan", groups=["acme-eng"])
    async with sso_app([provider_entry(op, role_mappings=MAPPINGS)]) as sso:
        await sso.create_org("acme")
        before = (await sign_in(sso.client, PROVIDER, "ivan")).response.json()
        op.set_groups("ivan", [])
        await sign_in(sso.client, PROVIDER, "ivan")
        assert (await sso.client.get("/auth/me", headers=bearer(before["access_token"]))).status_code == 200


async def register(sso_client: object, username: str, email: str) -> str:
    from httpx import AsyncClient

    assert isinstance(sso_client, AsyncClient)
    response = await sso_client.post(
        "/auth/register", json={"username": username, "email": email, "password": "a long passphrase 8812"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_an_existing_account_is_not_linked_unless_the_deployment_allows_it(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    op.add_user("judy", email="judy@example.com", email_verified=True)
    async with sso_app([provider_entry(op)]) as sso:
        await register(sso.client, "judy-local", "judy@example.com")
        refused = await sign_in(sso.client, PROVIDER, "judy")
        assert refused.response.status_code == 409
        assert refused.response.json()["type"] == PROBLEM + "oidc-account-exists"
        failed = await sso.audit("sso_login_failed")
        assert [(row.status, row.details["reason"]) for row in failed] == [("failure", "account_exists")]
        assert await sso.sql("SELECT id FROM user_identities") == []


async def test_an_unverified_email_is_refused_for_linking(op: OpenIdProvider, sso_app: SsoAppFactory) -> None:
    op.add_user("ken", email="ken@example.com", email_verified=False)
    async with sso_app([provider_entry(op)], oidc_link_verified_email=True) as sso:
        await register(sso.client, "ken-local", "ken@example.com")
        refused = await sign_in(sso.client, PROVIDER, "ken")
        assert refused.response.status_code == 403
        problem = refused.response.json()
        assert problem["type"] == PROBLEM + "oidc-email-not-verified"
        assert "verif" in problem["detail"]
        assert await sso.sql("SELECT id FROM user_identities") == []


async def test_a_verified_email_links_the_existing_account_when_allowed(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    op.add_user("liz", email="liz@example.com", email_verified=True)
    async with sso_app([provider_entry(op)], oidc_link_verified_email=True) as sso:
        user_id = await register(sso.client, "liz-local", "liz@example.com")
        linked = await sign_in(sso.client, PROVIDER, "liz")
        assert linked.response.status_code == 200, linked.response.text
        me = await sso.client.get("/auth/me", headers=bearer(linked.response.json()["access_token"]))
        assert me.json()["id"] == user_id
        provisioned = await sso.audit("sso_user_provisioned")
        assert [row.details["linked"] for row in provisioned] == [True]
