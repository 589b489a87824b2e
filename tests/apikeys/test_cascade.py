"""Revoking an API key revokes every key created through it (children, grandchildren), each
audited, and nothing else: a leaked key cannot mint a successor that outlives it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import Team, create_key, key_header, make_team

# Enough to create keys and to prove a key works (listing members).
MINTING = ["apikeys:manage", "members:read"]


def _members(team: Team) -> str:
    return f"/api/orgs/{team.org_id}/members"


async def _status(client: httpx.AsyncClient, team: Team, key: dict[str, Any]) -> int:
    return (await client.get(_members(team), headers=key_header(key))).status_code


async def _lineage(client: httpx.AsyncClient, team: Team) -> list[dict[str, Any]]:
    """A user's key, the key it created, and the key that one created."""
    first = await create_key(client, team.headers(Role.ADMIN), MINTING)
    child = await create_key(client, key_header(first), MINTING)
    grandchild = await create_key(client, key_header(child), ["members:read"])
    return [first, child, grandchild]


async def _listed(client: httpx.AsyncClient, team: Team) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/api-keys", params={"limit": 100}, headers=team.headers(Role.OWNER))
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["items"]}


async def test_a_key_records_the_key_that_created_it(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    first, child, grandchild = await _lineage(client, team)
    assert first["parent_key_id"] is None
    assert child["parent_key_id"] == first["id"]
    assert grandchild["parent_key_id"] == child["id"]
    listed = await _listed(client, team)
    assert listed[grandchild["id"]]["parent_key_id"] == child["id"]


async def test_revoking_a_key_stops_its_children_and_grandchildren_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    first, child, grandchild = await _lineage(client, team)
    assert [await _status(client, team, key) for key in (first, child, grandchild)] == [200, 200, 200]

    revoked = await client.delete(f"/api/api-keys/{first['id']}", headers=team.headers(Role.OWNER))
    assert revoked.status_code == 204
    assert [await _status(client, team, key) for key in (first, child, grandchild)] == [401, 401, 401]
    listed = await _listed(client, team)
    assert all(listed[key["id"]]["revoked_at"] is not None for key in (first, child, grandchild))

    rows = {str(row.resource_id): row for row in await audit_rows(app, "api_key_revoked")}
    assert set(rows) == {first["id"], child["id"], grandchild["id"]}
    assert "reason" not in (rows[first["id"]].details or {})
    assert rows[child["id"]].details is not None
    assert rows[child["id"]].details["reason"] == "parent_revoked"
    assert rows[child["id"]].details["parent_key_id"] == first["id"]
    assert rows[child["id"]].details["cascaded_from"] == first["id"]
    assert rows[grandchild["id"]].details is not None
    assert rows[grandchild["id"]].details["parent_key_id"] == child["id"]
    assert rows[grandchild["id"]].details["cascaded_from"] == first["id"]
    for row in rows.values():
        assert str(row.org_id) == team.org_id
        for key in (first, child, grandchild):
            assert key["key"] not in repr(row.details)

    again = await client.delete(f"/api/api-keys/{first['id']}", headers=team.headers(Role.OWNER))
    assert again.status_code == 204
    assert len(await audit_rows(app, "api_key_revoked")) == 3


async def test_revoking_a_child_leaves_its_parent_working(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    first, child, grandchild = await _lineage(client, team)
    # The parent itself revokes the key it made.
    revoked = await client.delete(f"/api/api-keys/{child['id']}", headers=key_header(first))
    assert revoked.status_code == 204
    assert [await _status(client, team, key) for key in (first, child, grandchild)] == [200, 401, 401]
    assert (await _listed(client, team))[first["id"]]["revoked_at"] is None


async def test_revoking_a_users_key_touches_no_sibling(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    revoked_key = await create_key(client, team.headers(Role.ADMIN), MINTING)
    revoked_child = await create_key(client, key_header(revoked_key), ["members:read"])
    sibling = await create_key(client, team.headers(Role.ADMIN), MINTING)
    sibling_child = await create_key(client, key_header(sibling), ["members:read"])

    response = await client.delete(f"/api/api-keys/{revoked_key['id']}", headers=team.headers(Role.ADMIN))
    assert response.status_code == 204
    assert await _status(client, team, revoked_child) == 401
    assert await _status(client, team, sibling) == 200
    assert await _status(client, team, sibling_child) == 200
    rows = await audit_rows(app, "api_key_revoked")
    assert {str(row.resource_id) for row in rows} == {revoked_key["id"], revoked_child["id"]}


async def test_removing_the_creator_stops_the_whole_lineage_without_revoking_it(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    lineage = await _lineage(client, team)
    removed = await client.delete(
        f"{_members(team)}/{team.user_ids[Role.ADMIN]}", headers=team.headers(Role.OWNER)
    )
    assert removed.status_code == 204
    assert [await _status(client, team, key) for key in lineage] == [401, 401, 401]
    listed = await _listed(client, team)
    assert [listed[key["id"]]["revoked_at"] for key in lineage] == [None, None, None]


async def test_a_child_created_while_its_parent_is_revoked_does_not_survive(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    parent = await create_key(client, team.headers(Role.ADMIN), MINTING)

    async def mint() -> httpx.Response:
        return await client.post(
            "/api/api-keys", json={"name": "racer", "scopes": ["members:read"]}, headers=key_header(parent)
        )

    revoke = client.delete(f"/api/api-keys/{parent['id']}", headers=team.headers(Role.OWNER))
    answers = await asyncio.gather(*(mint() for _ in range(4)), revoke, *(mint() for _ in range(4)))
    assert answers[4].status_code == 204
    minted = [answer for answer in answers[:4] + answers[5:] if answer.status_code == 201]
    # Refused mints are the uniform 401 (revoked first) or 503 (the database was busy).
    assert all(answer.status_code in {201, 401, 503} for answer in answers[:4] + answers[5:])
    for answer in minted:
        assert await _status(client, team, {"key": answer.json()["key"]}) == 401
    listed = await _listed(client, team)
    assert all(item["revoked_at"] is not None for item in listed.values())
