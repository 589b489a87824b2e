"""The console's cookie session is the API's login session: an expired access token is
renewed with the refresh cookie (rotation), and every revocation ends console access."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from agentkeep.security.tokens import TokenCodec
from tests.auth.helpers import PASSWORD, register
from tests.console.pages import form_token, sign_in

NEW_PASSWORD = "an entirely new passphrase 7"


async def _expire_access_cookie(app: FastAPI, http: httpx.AsyncClient) -> str:
    """Replace the access cookie by an expired token of the same session; answers the old
    refresh cookie."""
    codec: TokenCodec = app.state.token_codec
    claims = codec.decode_access(http.cookies["agentkeep-access"])
    expired, _ = codec.issue_access(
        claims.user_id, claims.session_id, org_id=claims.org_id, now=datetime.now(UTC) - timedelta(hours=2)
    )
    http.cookies.set("agentkeep-access", expired)
    return str(http.cookies["agentkeep-refresh"])


async def test_an_expired_access_token_is_renewed_with_the_refresh_cookie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert (await register(client, "hana")).status_code == 201
    await sign_in(client, "hana")
    old_refresh = await _expire_access_cookie(app, client)
    # Two requests of one page, both with the expired token: one rotation serves both.
    first, second = await asyncio.gather(client.get("/"), client.get("/account"))
    assert (first.status_code, second.status_code) == (200, 200)
    assert "hana" in first.text
    assert client.cookies["agentkeep-refresh"] != old_refresh
    assert (await client.get("/agents")).status_code == 200
    # The rotated-out refresh token is dead on the API too (and presenting it again there
    # revokes the family, RFC 9700): the console is signed out with it.
    reused = await client.post("/auth/refresh", json={"refresh_token": old_refresh})
    assert reused.status_code == 401
    again = await client.get("/")
    assert again.status_code == 303
    assert again.headers["location"] == "/login?next=%2F"


async def test_logging_out_through_the_api_ends_console_access(client: httpx.AsyncClient) -> None:
    assert (await register(client, "ivan")).status_code == 201
    await sign_in(client, "ivan")
    access = client.cookies["agentkeep-access"]
    out = await client.post("/auth/logout", headers={"Authorization": f"Bearer {access}"})
    assert out.status_code == 204
    answer = await client.get("/agents")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fagents"


async def test_a_password_change_ends_the_session_and_the_new_password_signs_in(
    client: httpx.AsyncClient,
) -> None:
    assert (await register(client, "jade")).status_code == 201
    token = await sign_in(client, "jade")
    wrong = await client.post(
        "/account/password",
        data={"current_password": "not it at all, no", "new_password": NEW_PASSWORD, "csrf_token": token},
    )
    assert wrong.status_code == 403  # POST /auth/password's answer to a wrong current password
    assert "Current password is incorrect" in wrong.text
    changed = await client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "csrf_token": token},
    )
    assert changed.status_code == 303
    assert changed.headers["location"] == "/login?changed=1"
    assert (await client.get("/")).status_code == 303
    login_page = await client.get("/login?changed=1")
    assert "Your password was changed" in login_page.text
    answer = await client.post(
        "/login",
        data={"username": "jade", "password": NEW_PASSWORD, "csrf_token": form_token(login_page.text)},
    )
    assert answer.status_code == 303, answer.text
    assert (await client.get("/")).status_code == 200
