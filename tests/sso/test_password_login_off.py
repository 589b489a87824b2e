"""PASSWORD_LOGIN_ENABLED=false: password login refused for everyone but the instance
administrator created with `agentkeep create-admin` (the break-glass path), audited."""

from __future__ import annotations

import pytest

from agentkeep.auth.admin import create_admin
from tests.sso.browser import sign_in
from tests.sso.conftest import PROVIDER, SsoApp, SsoAppFactory, bearer, provider_entry
from tests.sso.peer import OpenIdProvider

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "break glass passphrase 4471"
OLGA_PASSWORD = "olga has her own passphrase 9035"


async def password_login(sso: SsoApp, username: str, password: str) -> tuple[int, dict[str, object]]:
    response = await sso.client.post("/auth/login", data={"username": username, "password": password})
    return response.status_code, response.json()


async def test_password_login_is_refused_alike_for_everyone_but_the_administrator(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    op.add_user("nina")
    async with sso_app([provider_entry(op)]) as before:  # while passwords were still on
        registered = await before.client.post(
            "/auth/register",
            json={"username": "olga", "email": "olga@example.com", "password": OLGA_PASSWORD},
        )
        assert registered.status_code == 201
    async with sso_app([provider_entry(op)], password_login_enabled=False) as sso:
        await create_admin(sso.app.state.settings, "root", "root@example.com", ADMIN_PASSWORD)
        signed = await sign_in(sso.client, PROVIDER, "nina")
        assert signed.response.status_code == 200, signed.response.text

        refusals = [
            await password_login(sso, "olga", OLGA_PASSWORD),
            await password_login(sso, "nina", "whatever she tries 123"),
            await password_login(sso, "nobody", "whatever she tries 123"),
            await password_login(sso, "root", "not the admin password"),
        ]
        assert {status for status, _ in refusals} == {401}
        assert {problem["type"] for _, problem in refusals} == {
            "urn:agentkeep:problem:password-login-disabled"
        }
        assert len({problem["detail"] for _, problem in refusals}) == 1

        status, tokens = await password_login(sso, "root", ADMIN_PASSWORD)
        assert status == 200
        me = await sso.client.get("/auth/me", headers=bearer(str(tokens["access_token"])))
        assert me.json()["is_superuser"] is True

        successes = await sso.sql("SELECT details FROM audit_logs WHERE action = 'login_success'")
        assert len(successes) == 1
        assert "break_glass" in str(successes[0].details)
        reasons = await sso.sql("SELECT details FROM audit_logs WHERE action = 'login_failed'")
        assert "password_login_disabled" in " ".join(str(row.details) for row in reasons)


async def test_registration_is_closed_without_password_login(
    op: OpenIdProvider, sso_app: SsoAppFactory
) -> None:
    async with sso_app([provider_entry(op)], password_login_enabled=False) as sso:
        response = await sso.client.post(
            "/auth/register",
            json={"username": "newbie", "email": "newbie@example.com", "password": "a long passphrase 8812"},
        )
    assert response.status_code == 403
