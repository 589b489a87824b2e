"""Only `org:manage` reaches providers, and only in the caller's current organization."""

from __future__ import annotations

import httpx

from agentkeep.rbac.permissions import ROLE_PERMISSIONS, Permission, Role
from tests.orgs.helpers import create_key, key_header, make_team
from tests.providers.conftest import provider_key
from tests.providers.helpers import create_provider, providers_path

DENIED = "urn:agentkeep:problem:permission-denied"


async def test_another_organizations_providers_answer_404(client: httpx.AsyncClient) -> None:
    acme = await make_team(client, "acme", "olivia")
    globex = await make_team(client, "globex", "gus")
    key = provider_key()
    theirs = await create_provider(client, acme.org_id, acme.headers(Role.OWNER), key)
    mine = globex.headers(Role.OWNER)
    calls = [
        ("GET", providers_path(acme.org_id), None),
        (
            "POST",
            providers_path(acme.org_id),
            {"name": "x", "base_url": "https://a.example/v1", "api_key": key},
        ),
        ("GET", providers_path(acme.org_id, theirs["id"]), None),
        ("PATCH", providers_path(acme.org_id, theirs["id"]), {"api_key": provider_key()}),
        ("DELETE", providers_path(acme.org_id, theirs["id"]), None),
        # The right organization in the path, another organization's provider id.
        ("GET", providers_path(globex.org_id, theirs["id"]), None),
        ("PATCH", providers_path(globex.org_id, theirs["id"]), {"api_key": provider_key()}),
        ("DELETE", providers_path(globex.org_id, theirs["id"]), None),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body, headers=mine)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["title"] in {"Organization not found", "Provider not found"}
    unchanged = await client.get(providers_path(acme.org_id, theirs["id"]), headers=acme.headers(Role.OWNER))
    assert unchanged.json() == theirs
    assert (await client.get(providers_path(globex.org_id), headers=mine)).json()["items"] == []


async def test_only_org_manage_may_call_any_provider_route(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await create_provider(client, team.org_id, owner, provider_key())
    one = providers_path(team.org_id, created["id"])
    calls = [
        ("GET", providers_path(team.org_id), None),
        (
            "POST",
            providers_path(team.org_id),
            {"name": "n", "base_url": "https://a.example/v1", "api_key": "k"},
        ),
        ("GET", one, None),
        ("PATCH", one, {"api_key": provider_key()}),
        ("DELETE", one, None),
    ]
    every_scope_but_org_manage = [p.value for p in Permission if p is not Permission.ORG_MANAGE]
    callers = {role.value: team.headers(role) for role in Role if role is not Role.OWNER}
    callers["owner key without org:manage"] = key_header(
        await create_key(client, owner, every_scope_but_org_manage)
    )
    assert [role for role in Role if Permission.ORG_MANAGE in ROLE_PERMISSIONS[role]] == [Role.OWNER]
    for caller, headers in callers.items():
        for method, path, body in calls:
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == 403, (caller, method, path)
            assert response.json()["type"] == DENIED
    for method, path, body in calls:
        assert (await client.request(method, path, json=body)).status_code == 401
    # An API key holding org:manage acts like its owner would.
    manager_key = key_header(await create_key(client, owner, ["org:manage"]))
    assert (await client.get(one, headers=manager_key)).status_code == 200
    rotated = await client.patch(one, json={"api_key": provider_key()}, headers=manager_key)
    assert rotated.status_code == 200
    assert (await client.get(one, headers=owner)).json()["key_hint"] == rotated.json()["key_hint"]
