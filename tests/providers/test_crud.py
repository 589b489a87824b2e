"""Provider CRUD: the key goes in and never comes out; URLs and names are checked; audited."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from agentkeep.errors import InvalidInput
from agentkeep.providers.service import check_transport
from agentkeep.rbac.permissions import Role
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import make_team
from tests.providers.conftest import provider_key
from tests.providers.helpers import create_provider, providers_path


async def test_the_key_appears_in_no_response_only_its_last_four_characters(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    key = provider_key()
    response = await client.post(
        providers_path(team.org_id),
        json={"name": "default", "base_url": "https://api.example.com/v1/", "api_key": key},
        headers=owner,
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    assert created["name"] == "default"
    assert created["kind"] == "openai"
    assert created["base_url"] == "https://api.example.com/v1"
    assert created["key_hint"] == key[-4:]
    assert created["key_status"] == "ok"
    assert created["created_by"] == team.user_ids[Role.OWNER]
    assert "api_key" not in created
    listed = await client.get(providers_path(team.org_id), headers=owner)
    one = await client.get(providers_path(team.org_id, created["id"]), headers=owner)
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
    assert one.json() == created
    for answer in (response, listed, one):
        assert key not in answer.text
        assert key[:-4] not in answer.text


async def test_a_short_key_gets_no_hint(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    created = await create_provider(client, team.org_id, team.headers(Role.OWNER), "sk-short-1")
    assert created["key_hint"] == ""


async def test_rotating_the_key_and_moving_the_url(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await create_provider(client, team.org_id, owner, provider_key())
    path = providers_path(team.org_id, created["id"])
    new_key = provider_key()
    rotated = await client.patch(path, json={"api_key": new_key}, headers=owner)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["key_hint"] == new_key[-4:]
    assert rotated.json()["base_url"] == created["base_url"]
    assert new_key not in rotated.text
    # Pointing the stored key at another URL is refused: the new URL comes with its key.
    moved_alone = await client.patch(
        path, json={"base_url": "https://elsewhere.example.org/v1"}, headers=owner
    )
    assert moved_alone.status_code == 422
    assert (await client.get(path, headers=owner)).json()["base_url"] == created["base_url"]
    third_key = provider_key()
    moved = await client.patch(
        path, json={"base_url": "https://elsewhere.example.org/v1", "api_key": third_key}, headers=owner
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["base_url"] == "https://elsewhere.example.org/v1"
    assert moved.json()["key_hint"] == third_key[-4:]
    assert (await client.patch(path, json={}, headers=owner)).status_code == 422


async def test_delete_removes_the_provider(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await create_provider(client, team.org_id, owner, provider_key())
    path = providers_path(team.org_id, created["id"])
    assert (await client.delete(path, headers=owner)).status_code == 204
    assert (await client.get(path, headers=owner)).status_code == 404
    assert (await client.delete(path, headers=owner)).status_code == 404
    assert (await client.get(providers_path(team.org_id), headers=owner)).json()["items"] == []


async def test_names_are_unique_in_an_organization(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    await create_provider(client, team.org_id, owner, provider_key(), name="vllm")
    again = await client.post(
        providers_path(team.org_id),
        json={"name": "vllm", "base_url": "https://other.example.com/v1", "api_key": provider_key()},
        headers=owner,
    )
    assert again.status_code == 409
    assert again.json()["field"] == "name"
    assert len((await client.get(providers_path(team.org_id), headers=owner)).json()["items"]) == 1


BAD_BODIES: list[tuple[dict[str, object], str]] = [
    ({"base_url": "http://models.example.com/v1"}, "base_url"),
    ({"base_url": "ftp://models.example.com/v1"}, "base_url"),
    ({"base_url": "https://user:pass@models.example.com/v1"}, "base_url"),
    ({"base_url": "https://models.example.com/v1?api-version=1"}, "base_url"),
    ({"base_url": "https://models.example.com/v1#x"}, "base_url"),
    ({"base_url": "https://169.254.169.254/latest"}, "base_url"),
    ({"base_url": "https://metadata.google.internal/v1"}, "base_url"),
    ({"base_url": "https://[::]/v1"}, "base_url"),
    ({"base_url": "models.example.com/v1"}, "base_url"),
    ({"base_url": "https://example.com/" + "a" * 2048}, "base_url"),
    ({"api_key": ""}, "api_key"),
    ({"api_key": "k" * 4097}, "api_key"),
    ({"name": ""}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "n" * 101}, "name"),
    ({"kind": "anthropic"}, "kind"),
    ({"extra": True}, "extra"),
]


async def test_bad_input_is_a_422_and_stores_nothing(client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    for body, field in BAD_BODIES:
        payload = {
            "name": "p",
            "base_url": "https://models.example.com/v1",
            "api_key": provider_key(),
            **body,
        }
        response = await client.post(providers_path(team.org_id), json=payload, headers=owner)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert field in response.text, body
    assert (await client.get(providers_path(team.org_id), headers=owner)).json()["items"] == []


async def test_plain_http_is_accepted_for_a_loopback_model_server_in_development(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team(client)
    for number, url in enumerate(
        ["http://127.0.0.1:11434/v1", "http://localhost:8001/v1", "http://[::1]/v1"]
    ):
        created = await create_provider(
            client, team.org_id, team.headers(Role.OWNER), provider_key(), name=f"local{number}", base_url=url
        )
        assert created["base_url"] == url


def test_production_requires_https_even_for_loopback() -> None:
    check_transport("https://models.example.com/v1", "production")
    with pytest.raises(InvalidInput):
        check_transport("http://127.0.0.1:11434/v1", "production")
    with pytest.raises(InvalidInput):
        check_transport("http://models.internal:8000/v1", "development")


async def test_every_change_is_audited_without_the_key(app: FastAPI, client: httpx.AsyncClient) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    keys = [provider_key(), provider_key(), provider_key()]
    created = await create_provider(client, team.org_id, owner, keys[0])
    path = providers_path(team.org_id, created["id"])
    await client.patch(path, json={"api_key": keys[1]}, headers=owner)
    await client.patch(path, json={"base_url": "https://b.example.com/v1", "api_key": keys[2]}, headers=owner)
    await client.delete(path, headers=owner)
    rows = await audit_rows(app, "provider_created", "provider_updated", "provider_deleted")
    assert [(row.action, row.resource_id, str(row.org_id)) for row in rows] == [
        ("provider_created", created["id"], team.org_id),
        ("provider_updated", created["id"], team.org_id),
        ("provider_updated", created["id"], team.org_id),
        ("provider_deleted", created["id"], team.org_id),
    ]
    assert all(str(row.user_id) == team.user_ids[Role.OWNER] for row in rows)
    assert rows[0].details == {
        "name": "default",
        "kind": "openai",
        "base_url": "https://models.example.com/v1",
    }
    assert rows[1].details["changed"] == ["api_key"]
    assert rows[2].details["changed"] == ["api_key", "base_url"]
    stored = repr([(row.details, row.resource_id) for row in rows])
    for key in keys:
        assert key not in stored
