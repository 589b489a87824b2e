"""API keys: shown once and stored as an HMAC, scopes, expiry, IP ranges, revocation, the
creator's current role as second gate, per-key rate limit, last use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import text, update

from agentkeep.apikeys.secret import is_well_formed, new_api_key
from agentkeep.db.models import Base
from agentkeep.rbac.permissions import Role
from agentkeep.users.models import User
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import Team, create_key, key_header, make_team
from tests.support.timing import eventually


def _members(team: Team) -> str:
    return f"/api/orgs/{team.org_id}/members"


def test_the_checksum_rejects_a_typo() -> None:
    key = new_api_key()
    assert is_well_formed(key)
    typo = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    assert not is_well_formed(typo)
    assert not is_well_formed(key[:-1])


async def test_the_secret_is_shown_once_and_only_its_hmac_is_stored(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    created = await create_key(client, team.headers(Role.ADMIN), ["members:read"])
    secret = created["key"]
    assert secret.startswith("ak_")
    assert created["prefix"] == secret[: len(created["prefix"])]
    listing = await client.get("/api/api-keys", headers=team.headers(Role.ADMIN))
    assert [item["prefix"] for item in listing.json()["items"]] == [created["prefix"]]
    assert secret not in listing.text
    assert "hash" not in listing.text
    async with app.state.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in (await connection.execute(text(f'SELECT * FROM "{table.name}"'))).all():  # noqa: S608
                assert secret not in repr(tuple(row)), table.name
                assert secret[3:] not in repr(tuple(row)), table.name
    rows = await audit_rows(app, "api_key_created")
    assert len(rows) == 1
    assert str(rows[0].org_id) == team.org_id


async def test_a_key_works_in_either_header_within_its_scopes(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    key = await create_key(client, team.headers(Role.ADMIN), ["members:read"])
    assert (await client.get(_members(team), headers=key_header(key))).status_code == 200
    bearer = {"Authorization": f"Bearer {key['key']}"}
    assert (await client.get(_members(team), headers=bearer)).status_code == 200
    add = await client.post(_members(team), json={"user": "x", "role": "viewer"}, headers=key_header(key))
    assert add.status_code == 403
    typo = {"X-API-Key": key["key"][:-1] + ("0" if key["key"][-1] != "0" else "1")}
    assert (await client.get(_members(team), headers=typo)).status_code == 401
    assert (await client.get("/auth/me", headers=key_header(key))).status_code == 403


async def test_scopes_beyond_the_creators_permissions_are_403_naming_them(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    response = await client.post(
        "/api/api-keys",
        json={"name": "too much", "scopes": ["members:read", "org:manage"]},
        headers=team.headers(Role.ADMIN),
    )
    assert response.status_code == 403
    assert response.json()["type"] == "urn:agentkeep:problem:privilege-escalation"
    assert response.json()["missing_permissions"] == ["org:manage"]
    for body in (
        {"name": "x", "scopes": ["members:read"], "org_id": team.org_id},
        {"name": "x", "scopes": ["members:read"], "created_by": team.user_ids[Role.OWNER]},
        {"name": "x", "scopes": ["members:read"], "allowed_cidrs": ["not-a-range"]},
        {"name": "x", "scopes": ["members:read"], "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "x", "scopes": []},
    ):
        refused = await client.post("/api/api-keys", json=body, headers=team.headers(Role.ADMIN))
        assert refused.status_code == 422, body
    listing = await client.get("/api/api-keys", headers=team.headers(Role.ADMIN))
    assert listing.json()["items"] == []


async def test_an_expired_key_is_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    key = await create_key(client, team.headers(Role.ADMIN), ["members:read"], expires_at=soon)
    assert (await client.get(_members(team), headers=key_header(key))).status_code == 200
    async with app.state.sessionmaker() as session, session.begin():
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(text("UPDATE api_keys SET expires_at = :past"), {"past": past})

    # A change made behind the application's back (raw SQL) is not announced: it takes
    # effect when the principal cache's entry lapses, within a second (docs/SECURITY.md).
    async def refused() -> bool:
        return (await client.get(_members(team), headers=key_header(key))).status_code == 401

    assert await eventually(refused, within=1.0)


async def test_a_key_is_refused_outside_its_allowed_ip_ranges(client: httpx.AsyncClient) -> None:
    team = await make_team(client)  # the test client connects from 127.0.0.1
    elsewhere = await create_key(
        client, team.headers(Role.ADMIN), ["members:read"], allowed_cidrs=["10.0.0.0/8"]
    )
    local = await create_key(
        client, team.headers(Role.ADMIN), ["members:read"], allowed_cidrs=["127.0.0.0/8", "::1"]
    )
    assert (await client.get(_members(team), headers=key_header(elsewhere))).status_code == 401
    assert (await client.get(_members(team), headers=key_header(local))).status_code == 200
    assert local["allowed_cidrs"] == ["127.0.0.0/8", "::1/128"]


async def test_revocation_stops_the_key_at_once_and_is_audited(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    key = await create_key(client, team.headers(Role.ADMIN), ["members:read"])
    revoked = await client.delete(f"/api/api-keys/{key['id']}", headers=team.headers(Role.OWNER))
    assert revoked.status_code == 204
    assert (await client.get(_members(team), headers=key_header(key))).status_code == 401
    rows = await audit_rows(app, "api_key_revoked")
    assert [str(row.resource_id) for row in rows] == [key["id"]]


async def test_the_creators_current_role_is_the_second_gate(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    # The viewer role's permissions and members:manage: enough to invite a viewer.
    scopes = ["agents:read", "runs:read", "usage:read", "members:read", "members:manage"]
    key = await create_key(client, team.headers(Role.ADMIN), scopes)
    admin_path = f"{_members(team)}/{team.user_ids[Role.ADMIN]}"
    invite = {"user": team.users[Role.MEMBER], "role": "viewer"}
    assert (await client.post(_members(team), json=invite, headers=key_header(key))).status_code == 409
    await client.patch(admin_path, json={"role": "viewer"}, headers=team.headers(Role.OWNER))
    assert (await client.post(_members(team), json=invite, headers=key_header(key))).status_code == 403
    assert (await client.get(_members(team), headers=key_header(key))).status_code == 200
    await client.delete(admin_path, headers=team.headers(Role.OWNER))
    assert (await client.get(_members(team), headers=key_header(key))).status_code == 401


async def test_a_disabled_creators_keys_stop(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    key = await create_key(client, team.headers(Role.ADMIN), ["members:read"])
    async with app.state.sessionmaker() as session, session.begin():
        admin_id = uuid.UUID(team.user_ids[Role.ADMIN])
        await session.execute(update(User).where(User.id == admin_id).values(is_active=False))
    assert (await client.get(_members(team), headers=key_header(key))).status_code == 401


async def test_another_organizations_key_cannot_be_revoked_or_seen(client: httpx.AsyncClient) -> None:
    ours = await make_team(client, "ours", owner="olivia")
    theirs = await make_team(client, "theirs", owner="theo")
    key = await create_key(client, theirs.headers(Role.OWNER), ["members:read"])
    assert (
        await client.delete(f"/api/api-keys/{key['id']}", headers=ours.headers(Role.OWNER))
    ).status_code == 404
    assert (await client.get("/api/api-keys", headers=ours.headers(Role.OWNER))).json()["items"] == []
    assert (await client.get(_members(theirs), headers=key_header(key))).status_code == 200
    # A key acts only in its own organization: another org's id is 404 like for anyone.
    assert (await client.get(_members(ours), headers=key_header(key))).status_code == 404


async def test_keys_are_listed_newest_first_in_cursor_pages(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    created = [await create_key(client, team.headers(Role.ADMIN), ["members:read"]) for _ in range(3)]
    first = await client.get("/api/api-keys", params={"limit": 2}, headers=team.headers(Role.ADMIN))
    cursor = first.json()["next_cursor"]
    second = await client.get(
        "/api/api-keys", params={"limit": 2, "cursor": cursor}, headers=team.headers(Role.ADMIN)
    )
    ids = [item["id"] for item in first.json()["items"] + second.json()["items"]]
    assert sorted(ids) == sorted(key["id"] for key in created)
    assert len(first.json()["items"]) == 2
    assert second.json()["next_cursor"] is None


async def test_last_use_is_recorded_at_most_once_a_minute(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    key = await create_key(client, team.headers(Role.ADMIN), ["members:read"])
    await client.get(_members(team), headers=key_header(key))
    first = (await client.get("/api/api-keys", headers=team.headers(Role.ADMIN))).json()["items"][0][
        "last_used_at"
    ]
    await client.get(_members(team), headers=key_header(key))
    second = (await client.get("/api/api-keys", headers=team.headers(Role.ADMIN))).json()["items"][0][
        "last_used_at"
    ]
    assert first is not None
    assert second == first


async def test_a_request_that_fails_does_not_record_a_use(client: httpx.AsyncClient) -> None:
    """A safe request runs without a transaction on PostgreSQL (docs/ARCHITECTURE.md): the
    key's use is still recorded only when the request succeeds, as in a transaction."""
    team = await make_team(client)
    key = await create_key(client, team.headers(Role.ADMIN), ["agents:read"])
    missing = await client.get(f"/api/agents/{uuid.uuid4()}", headers=key_header(key))
    assert missing.status_code == 404
    listed = (await client.get("/api/api-keys", headers=team.headers(Role.ADMIN))).json()["items"]
    assert listed[0]["last_used_at"] is None
    assert (await client.get("/api/agents", headers=key_header(key))).status_code == 200
    listed = (await client.get("/api/api-keys", headers=team.headers(Role.ADMIN))).json()["items"]
    assert listed[0]["last_used_at"] is not None
