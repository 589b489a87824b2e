"""/api/users: instance administration by superusers (list, disable, enable, superuser)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.auth.helpers import bearer, login, register
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import login_in


async def _admin_and_users(
    app: FastAPI, http: httpx.AsyncClient, *names: str
) -> tuple[dict[str, str], dict[str, Any]]:
    ids = {}
    for name in ("root", *names):
        ids[name] = (await register(http, name)).json()["id"]
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE users SET is_superuser = :yes WHERE username = 'root'"), {"yes": True}
        )
    return ids, bearer((await login_in(http, "root"))["access_token"])


async def test_users_are_listed_in_cursor_pages(app: FastAPI, client: httpx.AsyncClient) -> None:
    _, root = await _admin_and_users(app, client, "ann", "ben")
    first = await client.get("/api/users", params={"limit": 2}, headers=root)
    assert first.status_code == 200
    second = await client.get(
        "/api/users", params={"limit": 2, "cursor": first.json()["next_cursor"]}, headers=root
    )
    names = [item["username"] for item in first.json()["items"] + second.json()["items"]]
    assert sorted(names) == ["ann", "ben", "root"]
    assert second.json()["next_cursor"] is None
    assert "password_hash" not in first.text
    assert (await client.get("/api/users", params={"cursor": "garbage"}, headers=root)).status_code == 422


async def test_disabling_ends_every_session_at_once_and_enabling_allows_login(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ids, root = await _admin_and_users(app, client, "ann")
    ann = await login_in(client, "ann")
    disabled = await client.post(f"/api/users/{ids['ann']}/disable", headers=root)
    assert disabled.status_code == 200
    assert disabled.json()["is_active"] is False
    assert (await client.get("/auth/me", headers=bearer(ann["access_token"]))).status_code == 401
    assert (
        await client.post("/auth/refresh", json={"refresh_token": ann["refresh_token"]})
    ).status_code == 401
    assert (await login(client, "ann")).status_code == 401
    assert (await client.post(f"/api/users/{ids['ann']}/enable", headers=root)).status_code == 200
    assert (await login(client, "ann")).status_code == 200
    rows = await audit_rows(app, "user_disabled", "user_enabled")
    assert [(row.action, str(row.resource_id), str(row.user_id)) for row in rows] == [
        ("user_disabled", ids["ann"], ids["root"]),
        ("user_enabled", ids["ann"], ids["root"]),
    ]


async def test_a_superuser_cannot_disable_or_demote_themselves(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ids, root = await _admin_and_users(app, client)
    disable = await client.post(f"/api/users/{ids['root']}/disable", headers=root)
    demote = await client.post(
        f"/api/users/{ids['root']}/superuser", json={"is_superuser": False}, headers=root
    )
    assert [disable.status_code, demote.status_code] == [409, 409]
    assert (await client.get("/auth/me", headers=root)).json()["is_superuser"] is True


async def test_superuser_rights_are_granted_and_revoked_with_audit(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ids, root = await _admin_and_users(app, client, "ann")
    path = f"/api/users/{ids['ann']}/superuser"
    assert (
        await client.post(path, json={"is_superuser": True, "is_active": False}, headers=root)
    ).status_code == 422
    granted = await client.post(path, json={"is_superuser": True}, headers=root)
    assert granted.json()["is_superuser"] is True
    ann = bearer((await login_in(client, "ann"))["access_token"])
    assert (await client.get("/api/users", headers=ann)).status_code == 200
    await client.post(path, json={"is_superuser": False}, headers=root)
    assert (await client.get("/api/users", headers=ann)).status_code == 403
    rows = await audit_rows(app, "superuser_granted", "superuser_revoked")
    assert [row.action for row in rows] == ["superuser_granted", "superuser_revoked"]
    unknown = await client.post("/api/users/00000000-0000-0000-0000-000000000000/disable", headers=root)
    assert unknown.status_code == 404
