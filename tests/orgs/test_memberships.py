"""Organizations and memberships: personal orgs, invitations, roles, removal, last owner."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.auth.helpers import bearer, register
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import login_in, make_team, my_orgs

ORGS = "/api/orgs"


async def test_registration_creates_a_personal_organization_owned_by_the_user(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await register(client, "alice")
    tokens = await login_in(client, "alice")
    orgs = await my_orgs(client, tokens["access_token"])
    assert [(org["slug"], org["is_personal"], org["role"]) for org in orgs] == [("~alice", True, "owner")]
    rows = await audit_rows(app, "user_registered", "org_created")
    assert [row.action for row in rows] == ["user_registered", "org_created"]
    assert str(rows[1].org_id) == orgs[0]["id"]
    assert str(rows[1].user_id) == created.json()["id"]


async def test_members_are_added_listed_changed_and_removed_with_audit(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team = await make_team(client)
    members = await client.get(f"{ORGS}/{team.org_id}/members", headers=team.headers(Role.VIEWER))
    assert members.status_code == 200
    assert {item["username"]: item["role"] for item in members.json()["items"]} == {
        name: role.value for role, name in team.users.items()
    }
    member_path = f"{ORGS}/{team.org_id}/members/{team.user_ids[Role.VIEWER]}"
    changed = await client.patch(member_path, json={"role": "member"}, headers=team.headers(Role.ADMIN))
    assert changed.status_code == 200
    assert changed.json()["role"] == "member"
    removed = await client.delete(member_path, headers=team.headers(Role.ADMIN))
    assert removed.status_code == 204
    assert (await client.delete(member_path, headers=team.headers(Role.ADMIN))).status_code == 404
    rows = await audit_rows(app, "member_added", "role_changed", "member_removed")
    assert [row.action for row in rows] == ["member_added"] * 4 + ["role_changed", "member_removed"]
    assert all(str(row.org_id) == team.org_id for row in rows)
    assert rows[-2].details == {"from": "viewer", "to": "member"}


async def test_adding_requires_an_existing_user_who_is_not_yet_a_member(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    path = f"{ORGS}/{team.org_id}/members"
    unknown = await client.post(
        path, json={"user": "ghost", "role": "viewer"}, headers=team.headers(Role.ADMIN)
    )
    again = await client.post(
        path, json={"user": team.users[Role.MEMBER], "role": "viewer"}, headers=team.headers(Role.ADMIN)
    )
    assert unknown.status_code == 404
    assert again.status_code == 409


async def test_only_an_owner_grants_or_revokes_owner(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    path = f"{ORGS}/{team.org_id}/members"
    grant = await client.patch(
        f"{path}/{team.user_ids[Role.ADMIN]}", json={"role": "owner"}, headers=team.headers(Role.ADMIN)
    )
    revoke = await client.patch(
        f"{path}/{team.user_ids[Role.OWNER]}", json={"role": "viewer"}, headers=team.headers(Role.ADMIN)
    )
    remove = await client.delete(f"{path}/{team.user_ids[Role.OWNER]}", headers=team.headers(Role.ADMIN))
    assert [grant.status_code, revoke.status_code, remove.status_code] == [403, 403, 403]
    promoted = await client.patch(
        f"{path}/{team.user_ids[Role.ADMIN]}", json={"role": "owner"}, headers=team.headers(Role.OWNER)
    )
    assert promoted.status_code == 200


async def test_the_last_owner_can_be_neither_demoted_nor_removed(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner_path = f"{ORGS}/{team.org_id}/members/{team.user_ids[Role.OWNER]}"
    demote = await client.patch(owner_path, json={"role": "admin"}, headers=team.headers(Role.OWNER))
    remove = await client.delete(owner_path, headers=team.headers(Role.OWNER))
    assert [demote.status_code, remove.status_code] == [409, 409]
    assert demote.json()["type"] == "urn:agentkeep:problem:last-owner"
    second = await client.patch(
        f"{ORGS}/{team.org_id}/members/{team.user_ids[Role.ADMIN]}",
        json={"role": "owner"},
        headers=team.headers(Role.OWNER),
    )
    assert second.status_code == 200
    assert (
        await client.patch(owner_path, json={"role": "admin"}, headers=team.headers(Role.OWNER))
    ).status_code == 200


async def test_a_role_change_applies_to_the_next_request_of_an_existing_token(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    viewer, path = team.headers(Role.VIEWER), f"{ORGS}/{team.org_id}/members"
    invite = {"user": team.users[Role.MEMBER], "role": "viewer"}
    assert (await client.post(path, json=invite, headers=viewer)).status_code == 403
    await client.patch(
        f"{path}/{team.user_ids[Role.VIEWER]}", json={"role": "admin"}, headers=team.headers(Role.OWNER)
    )
    # Same token, now an admin: the permission check passes (409: already a member).
    assert (await client.post(path, json=invite, headers=viewer)).status_code == 409
    await client.patch(
        f"{path}/{team.user_ids[Role.ADMIN]}", json={"role": "viewer"}, headers=team.headers(Role.OWNER)
    )
    assert (await client.post(path, json=invite, headers=team.headers(Role.ADMIN))).status_code == 403


async def test_a_removed_member_keeps_the_login_but_no_permission_in_that_organization(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    member = team.headers(Role.MEMBER)
    await client.delete(
        f"{ORGS}/{team.org_id}/members/{team.user_ids[Role.MEMBER]}", headers=team.headers(Role.OWNER)
    )
    denied = await client.get(f"{ORGS}/{team.org_id}/members", headers=member)
    assert denied.status_code == 403
    assert "not a member" in denied.json()["detail"]
    assert [org["slug"] for org in await my_orgs(client, team.tokens[Role.MEMBER])] == [
        f"~{team.users[Role.MEMBER]}"
    ]
    back_home = await client.post(
        "/auth/switch-org", json={"org": f"~{team.users[Role.MEMBER]}"}, headers=member
    )
    assert back_home.status_code == 200


async def test_login_into_an_organization_of_which_one_is_not_a_member_is_the_uniform_401(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    await register(client, "outsider")
    not_member = await client.post(
        "/auth/login",
        data={"username": "outsider", "password": "correct horse battery staple 42", "org": team.slug},
    )
    bad_password = await client.post(
        "/auth/login", data={"username": "outsider", "password": "not the right one at all", "org": team.slug}
    )
    assert not_member.status_code == bad_password.status_code == 401
    assert not_member.json()["detail"] == bad_password.json()["detail"]
    by_id = await login_in(client, team.users[Role.VIEWER], team.org_id)
    assert (
        await client.get(f"{ORGS}/{team.org_id}", headers=bearer(by_id["access_token"]))
    ).status_code == 200


async def test_switching_organization_issues_new_tokens_and_ends_the_old_ones(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    personal = await login_in(client, team.users[Role.ADMIN])
    old = bearer(personal["access_token"])
    switched = await client.post("/auth/switch-org", json={"org": team.slug}, headers=old)
    assert switched.status_code == 200
    new = bearer(switched.json()["access_token"])
    assert (await client.get(f"{ORGS}/{team.org_id}", headers=new)).status_code == 200
    assert (await client.get("/auth/me", headers=old)).status_code == 401
    stale = await client.post("/auth/refresh", json={"refresh_token": personal["refresh_token"]})
    assert stale.status_code == 401
    refreshed = await client.post("/auth/refresh", json={"refresh_token": switched.json()["refresh_token"]})
    assert refreshed.status_code == 401  # the stale token's reuse revoked the family


async def test_switching_to_an_organization_one_does_not_belong_to_is_404(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    await register(client, "outsider")
    tokens = await login_in(client, "outsider")
    for ref in (team.slug, team.org_id, "no-such-org"):
        response = await client.post(
            "/auth/switch-org", json={"org": ref}, headers=bearer(tokens["access_token"])
        )
        assert response.status_code == 404


async def test_a_team_slug_is_unique_and_cannot_take_the_personal_form(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    taken = await client.post(ORGS, json={"name": "Again", "slug": team.slug}, headers=owner)
    personal_form = await client.post(ORGS, json={"name": "Mine", "slug": "~olivia"}, headers=owner)
    assert taken.status_code == 409
    assert personal_form.status_code == 422
