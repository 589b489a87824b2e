"""Registering, reading, changing and removing MCP servers: headers are write-only and stored
encrypted; names are unique per organization; changes are versioned (ETag / If-Match) and
audited without any header value."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.mcp.models import McpServer
from agentkeep.providers.reencrypt import reencrypt_all
from agentkeep.rbac.permissions import Role
from agentkeep.security.secretbox import SecretBox, generate_key
from tests.integration.conftest import audit_rows
from tests.mcp.conftest import McpTestServer, header_secret
from tests.mcp.helpers import body_for, register, servers_path, table_text
from tests.orgs.helpers import make_team


def _secret_free(text: str, *secrets: str) -> bool:
    return not any(secret in text or secret.split(" ")[-1] in text for secret in secrets)


async def test_headers_go_in_and_only_their_names_come_out(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, encryption_key: str
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    response = await client.post(servers_path(team.org_id), json=body_for(calc_server), headers=owner)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["header_names"] == ["Authorization"]
    assert created["headers_status"] == "ok"
    assert created["transport"] == "streamable-http"
    assert created["timeout_seconds"] == 30
    assert created["enabled"] is True
    assert created["tools_discovered_at"] is None
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == servers_path(team.org_id, created["id"])
    read = await client.get(servers_path(team.org_id, created["id"]), headers=owner)
    listed = await client.get(servers_path(team.org_id), headers=owner)
    assert read.json() == created
    assert listed.json() == {"items": [created], "next_cursor": None}
    for answer in (response, read, listed):
        assert _secret_free(answer.text, calc_server.header_value)
    stored = await table_text(app, "mcp_servers")
    assert _secret_free(stored, calc_server.header_value)
    async with app.state.sessionmaker() as session:
        row = (await session.scalars(select(McpServer))).one()
    assert row.headers_ciphertext is not None
    opened = json.loads(SecretBox([encryption_key]).decrypt(row.headers_ciphertext))
    assert opened == {"Authorization": calc_server.header_value}


async def test_names_are_unique_in_an_organization(
    client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    acme = await make_team(client, "acme", "olivia")
    globex = await make_team(client, "globex", "gus")
    await register(client, acme.org_id, acme.headers(Role.OWNER), body_for(calc_server))
    again = await client.post(
        servers_path(acme.org_id), json=body_for(calc_server), headers=acme.headers(Role.OWNER)
    )
    assert again.status_code == 409
    assert again.json()["type"] == "urn:agentkeep:problem:mcp-server-name-taken"
    await register(client, globex.org_id, globex.headers(Role.OWNER), body_for(calc_server))


async def test_a_server_without_headers_needs_no_encryption_key(
    settings: Settings, calc_server: McpTestServer
) -> None:
    app = create_app(settings.model_copy(update={"secrets_encryption_keys": []}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            team = await make_team(http)
            owner = team.headers(Role.OWNER)
            refused = await http.post(servers_path(team.org_id), json=body_for(calc_server), headers=owner)
            assert refused.status_code == 503
            assert refused.json()["type"] == "urn:agentkeep:problem:encryption-not-configured"
            plain = {"name": "open", "url": calc_server.url()}
            created = await http.post(servers_path(team.org_id), json=plain, headers=owner)
            assert created.status_code == 201, created.text
            assert created.json()["header_names"] == []
            assert created.json()["headers_status"] == "none"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"url": "ftp://tools.example.com/mcp"}, "url"),
        ({"url": "https://user:pw@tools.example.com/mcp"}, "url"),
        ({"url": "https://tools.example.com/mcp?token=abc"}, "url"),
        ({"url": "http://169.254.169.254/mcp"}, "url"),
        ({"transport": "stdio"}, "transport"),
        ({"headers": {"Host": "evil.example.com"}}, "headers"),
        ({"headers": {"Mcp-Session-Id": "x"}}, "headers"),
        ({"headers": {"X-Token": "two\nlines"}}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "headers"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 121}, "timeout_seconds"),
        ({"name": "has/slash"}, "name"),
        ({"command": "rm -rf /"}, "command"),
    ],
)
async def test_bad_bodies_are_refused_with_the_field_named(
    client: httpx.AsyncClient, change: dict[str, Any], error: str
) -> None:
    team = await make_team(client)
    body = {"name": "tools", "url": "https://tools.example.com/mcp", **change}
    response = await client.post(servers_path(team.org_id), json=body, headers=team.headers(Role.OWNER))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert error in json.dumps(response.json()["errors"])
    assert "evil.example.com" not in response.text  # values are not echoed
    listed = await client.get(servers_path(team.org_id), headers=team.headers(Role.OWNER))
    assert listed.json()["items"] == []


async def test_changes_are_versioned_and_guarded_by_if_match(
    client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await register(client, team.org_id, owner, body_for(calc_server))
    path = servers_path(team.org_id, created["id"])
    changed = await client.patch(path, json={"timeout_seconds": 5, "enabled": False}, headers=owner)
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == '"2"'
    assert (changed.json()["timeout_seconds"], changed.json()["enabled"]) == (5, False)
    unchanged = await client.patch(path, json={"enabled": False}, headers=owner)
    assert unchanged.json()["version"] == 2
    stale = await client.patch(path, json={"enabled": True}, headers={**owner, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"2"'
    fresh = await client.patch(path, json={"enabled": True}, headers={**owner, "If-Match": '"2"'})
    assert fresh.status_code == 200
    assert (await client.delete(path, headers={**owner, "If-Match": '"2"'})).status_code == 412
    assert (await client.delete(path, headers={**owner, "If-Match": '"3"'})).status_code == 204
    assert (await client.get(path, headers=owner)).status_code == 404


async def test_headers_are_replaced_whole_and_follow_the_url_only_when_given_again(
    client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await register(client, team.org_id, owner, body_for(calc_server))
    path = servers_path(team.org_id, created["id"])
    moved = await client.patch(path, json={"url": "https://elsewhere.example.com/mcp"}, headers=owner)
    assert moved.status_code == 422
    assert moved.json()["field"] == "headers"
    same_origin = await client.patch(path, json={"url": calc_server.url("/mcp/")}, headers=owner)
    assert same_origin.status_code == 200, same_origin.text
    new_secret = header_secret()
    replaced = await client.patch(
        path,
        json={"url": "https://elsewhere.example.com/mcp", "headers": {"X-Api-Key": new_secret}},
        headers=owner,
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["header_names"] == ["X-Api-Key"]
    cleared = await client.patch(path, json={"headers": {}}, headers=owner)
    assert cleared.json()["header_names"] == []
    assert cleared.json()["headers_status"] == "none"
    assert _secret_free(replaced.text + cleared.text, new_secret)


async def test_a_retried_create_with_its_idempotency_key_answers_the_same_server(
    client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = {**team.headers(Role.OWNER), "Idempotency-Key": "create-calc-1"}
    first = await client.post(servers_path(team.org_id), json=body_for(calc_server), headers=owner)
    again = await client.post(servers_path(team.org_id), json=body_for(calc_server), headers=owner)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await client.post(servers_path(team.org_id), json=body_for(calc_server, "other"), headers=owner)
    assert other.status_code == 409
    assert other.json()["type"] == "urn:agentkeep:problem:idempotency-key-reused"


async def test_every_change_is_audited_without_a_header_value(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    created = await register(client, team.org_id, owner, body_for(calc_server))
    path = servers_path(team.org_id, created["id"])
    second = header_secret()
    await client.patch(path, json={"headers": {"Authorization": f"Bearer {second}"}}, headers=owner)
    await client.patch(path, json={"name": "calculator"}, headers=owner)
    await client.delete(path, headers=owner)
    rows = await audit_rows(app, "mcp_server_created", "mcp_server_updated", "mcp_server_deleted")
    assert [(row.action, row.resource_type, row.resource_id, str(row.org_id)) for row in rows] == [
        ("mcp_server_created", "mcp_server", created["id"], team.org_id),
        ("mcp_server_updated", "mcp_server", created["id"], team.org_id),
        ("mcp_server_updated", "mcp_server", created["id"], team.org_id),
        ("mcp_server_deleted", "mcp_server", created["id"], team.org_id),
    ]
    assert all(str(row.user_id) == team.user_ids[Role.OWNER] for row in rows)
    assert rows[0].details["header_names"] == ["Authorization"]
    assert rows[0].details["url"] == calc_server.url()
    assert rows[1].details["changed"] == ["headers"]
    assert rows[2].details["changed"] == ["name"]
    stored = repr([(row.details, row.resource_id) for row in rows]) + await table_text(app, "audit_logs")
    assert _secret_free(stored, calc_server.header_value, second)


async def test_reencryption_rewrites_mcp_headers_under_the_newest_key(
    app: FastAPI, client: httpx.AsyncClient, calc_server: McpTestServer, encryption_key: str
) -> None:
    team = await make_team(client)
    await register(client, team.org_id, team.headers(Role.OWNER), body_for(calc_server))
    await register(client, team.org_id, team.headers(Role.OWNER), {"name": "open", "url": calc_server.url()})
    stranger = await reencrypt_all(app.state.sessionmaker, SecretBox([generate_key()]))
    assert [server.name for server in stranger.mcp.unreadable] == ["calc"]
    key_b = generate_key()
    report = await reencrypt_all(app.state.sessionmaker, SecretBox([key_b, encryption_key]))
    assert (report.mcp.rewritten, report.mcp.unreadable) == (1, [])
    async with app.state.sessionmaker() as session:
        ciphertexts = (await session.scalars(select(McpServer.headers_ciphertext))).all()
    (ciphertext,) = [c for c in ciphertexts if c is not None]
    assert json.loads(SecretBox([key_b]).decrypt(ciphertext)) == {"Authorization": calc_server.header_value}
    rows = await audit_rows(app, "mcp_server_updated")
    assert [row.details["changed"] for row in rows] == [["encryption_key"]]


def test_settings_refuse_a_malformed_mcp_allowlist(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="mcp_allowed_networks"):
        make_settings(mcp_allowed_networks="10.0.0.0/33")
    with pytest.raises(ValueError, match="mcp_allowed_networks"):
        make_settings(mcp_allowed_networks="169.254.169.254")
    assert make_settings(mcp_allowed_networks="10.0.0.0/8,tools.internal").mcp_allowed_networks == [
        "10.0.0.0/8",
        "tools.internal",
    ]


def test_secret_str_values_are_not_shown_in_a_body_repr() -> None:
    from agentkeep.mcp.schemas import McpServerCreate

    secret = header_secret()
    body = McpServerCreate(
        name="x", url="https://tools.example.com/mcp", headers={"X-Key": SecretStr(secret)}
    )
    assert secret not in repr(body)
    assert secret not in str(body.model_dump())
