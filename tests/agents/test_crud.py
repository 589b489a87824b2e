"""Create, read, list, change and archive agents, with their versions and audit records."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.agents.models import Agent, AgentVersion
from agentkeep.agents.repository import AgentRepository
from agentkeep.runs.contract import AgentSpec
from tests.agents.helpers import AGENTS, agent_body, create_agent, owner, versions
from tests.integration.conftest import audit_rows

FULL: dict[str, Any] = {
    "name": "researcher",
    "description": "Looks things up.",
    "model": "openai:gpt-4o-mini",
    "system_prompt": "You are careful.\nCite sources.",
    "tools": [{"name": "calculator"}, {"name": "http_get", "settings": {"allowed_hosts": ["example.com"]}}],
    "limits": {"max_steps": 5, "max_output_tokens": 1000, "timeout_seconds": 60, "max_context_tokens": 8000},
    "status": "disabled",
}


async def test_create_answers_201_with_the_agent_its_etag_and_location(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    response = await client.post(AGENTS, json=FULL, headers=headers)
    assert response.status_code == 201, response.text
    agent = response.json()
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"{AGENTS}/{agent['id']}"
    assert "idempotent-replayed" not in response.headers
    assert {key: agent[key] for key in ("name", "description", "model", "system_prompt", "status")} == {
        key: FULL[key] for key in ("name", "description", "model", "system_prompt", "status")
    }
    assert agent["limits"] == FULL["limits"]
    assert [tool["name"] for tool in agent["tools"]] == ["calculator", "http_get"]
    # Tool settings are stored complete, defaults filled in.
    assert agent["tools"][1]["settings"]["allowed_hosts"] == ["example.com"]
    assert agent["tools"][1]["settings"]["max_redirects"] == 3
    assert agent["version"] == 1
    fetched = await client.get(f"{AGENTS}/{agent['id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == agent
    assert fetched.headers["etag"] == '"1"'


async def test_defaults_fill_what_a_minimal_body_leaves_out(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers, name="minimal")
    assert agent["description"] == ""
    assert agent["system_prompt"] == ""
    assert agent["tools"] == []
    assert agent["limits"] == {
        "max_steps": 10,
        "max_output_tokens": 4096,
        "timeout_seconds": 120,
        "max_context_tokens": None,
    }
    assert agent["status"] == "active"
    # docs/approvals.md: the roles holding runs:approve, and an hour.
    assert agent["approvers"] == ["owner", "admin", "member"]
    assert agent["approval_timeout_seconds"] == 3600


async def test_version_one_holds_the_whole_document_runs_read(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers, **FULL)
    (first,) = await versions(client, headers, agent["id"])
    assert first["version"] == 1
    assert set(first["config"]) == {
        "name",
        "description",
        "model",
        "system_prompt",
        "tools",
        "limits",
        "status",
        "approvers",
        "approval_timeout_seconds",
    }
    assert first["config"]["tools"] == agent["tools"]
    async with app.state.sessionmaker() as session:
        row = await session.get(Agent, uuid.UUID(agent["id"]))
        assert row is not None
        stored = await AgentRepository(session).get_version(row.org_id, row.id, 1)
    assert stored is not None
    assert stored.config == first["config"]
    spec = AgentSpec.from_config(stored.config)
    assert spec.model == "openai:gpt-4o-mini"
    assert spec.limits.max_steps == 5
    assert [tool.name for tool in spec.tools] == ["calculator", "http_get"]


async def test_a_patch_makes_a_new_version_and_keeps_the_old_config(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers, **FULL)
    path = f"{AGENTS}/{agent['id']}"
    changed = await client.patch(
        path, json={"system_prompt": "Be brief.", "limits": {"max_steps": 7}}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == '"2"'
    body = changed.json()
    assert body["version"] == 2
    assert body["system_prompt"] == "Be brief."
    # limits merge key by key; everything not named stays.
    assert body["limits"] == {
        "max_steps": 7,
        "max_output_tokens": 1000,
        "timeout_seconds": 60,
        "max_context_tokens": 8000,
    }
    assert body["tools"] == agent["tools"]
    assert body["name"] == "researcher"
    history = await versions(client, headers, agent["id"])
    assert [item["version"] for item in history] == [2, 1]
    assert history[1]["config"]["system_prompt"] == FULL["system_prompt"]
    assert history[1]["config"]["limits"]["max_steps"] == 5
    assert history[0]["config"]["system_prompt"] == "Be brief."
    assert {key: history[0]["config"][key] for key in history[0]["config"]} == {
        key: body[key] for key in history[0]["config"]
    }


async def test_a_patch_that_changes_nothing_keeps_the_version(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers, **FULL)
    path = f"{AGENTS}/{agent['id']}"
    for body in ({}, {"name": "researcher"}, {"limits": {"max_steps": 5}}, {"tools": FULL["tools"]}):
        same = await client.patch(path, json=body, headers=headers)
        assert same.status_code == 200, same.text
        assert same.json()["version"] == 1
        assert same.headers["etag"] == '"1"'
    assert len(await versions(client, headers, agent["id"])) == 1
    assert await audit_rows(app, "agent_updated") == []


async def test_tools_are_replaced_as_a_whole(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers, **FULL)
    path = f"{AGENTS}/{agent['id']}"
    changed = await client.patch(path, json={"tools": [{"name": "current_time"}]}, headers=headers)
    assert [tool["name"] for tool in changed.json()["tools"]] == ["current_time"]
    cleared = await client.patch(path, json={"tools": []}, headers=headers)
    assert cleared.json()["tools"] == []
    assert cleared.json()["version"] == 3


async def test_names_are_unique_among_live_agents(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    first = await create_agent(client, headers, name="twin")
    clash = await client.post(AGENTS, json=agent_body(name="twin"), headers=headers)
    assert clash.status_code == 409
    assert clash.headers["content-type"] == "application/problem+json"
    assert clash.json()["type"] == "urn:agentkeep:problem:agent-name-taken"
    other = await create_agent(client, headers, name="other")
    renamed = await client.patch(f"{AGENTS}/{other['id']}", json={"name": "twin"}, headers=headers)
    assert renamed.status_code == 409
    assert (await client.get(f"{AGENTS}/{other['id']}", headers=headers)).json()["name"] == "other"
    # Archiving frees the name.
    assert (await client.delete(f"{AGENTS}/{first['id']}", headers=headers)).status_code == 204
    reused = await client.post(AGENTS, json=agent_body(name="twin"), headers=headers)
    assert reused.status_code == 201
    assert reused.json()["id"] != first["id"]


async def test_another_organization_may_use_the_same_name(client: httpx.AsyncClient) -> None:
    alice, bob = await owner(client, "alice"), await owner(client, "bob")
    await create_agent(client, alice, name="shared name")
    await create_agent(client, bob, name="shared name")


async def test_archive_hides_the_agent_and_keeps_its_versions(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers, name="old")
    path = f"{AGENTS}/{agent['id']}"
    await client.patch(path, json={"description": "v2"}, headers=headers)
    deleted = await client.delete(path, headers=headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    for method, body in (("GET", None), ("PATCH", {"description": "x"}), ("DELETE", None)):
        gone = await client.request(method, path, json=body, headers=headers)
        assert gone.status_code == 404, (method, gone.text)
    assert (await client.get(f"{path}/versions", headers=headers)).status_code == 404
    assert (await client.get(AGENTS, headers=headers)).json()["items"] == []
    async with app.state.sessionmaker() as session:
        row = await session.get(Agent, uuid.UUID(agent["id"]))
        assert row is not None
        assert row.archived_at is not None
        repository = AgentRepository(session)
        assert await repository.get_in_org(row.org_id, row.id) is None
        pinned = await repository.get_version(row.org_id, row.id, 2)
        assert pinned is not None
        assert pinned.config["description"] == "v2"
        stored = (
            await session.scalars(select(AgentVersion.version).where(AgentVersion.agent_id == row.id))
        ).all()
        assert sorted(stored) == [1, 2]


async def test_list_is_newest_first_paginated_and_filtered(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    created = [
        await create_agent(
            client, headers, name=f"agent {index}", status="disabled" if index % 2 else "active"
        )
        for index in range(5)
    ]
    archived = await create_agent(client, headers, name="archived")
    await client.delete(f"{AGENTS}/{archived['id']}", headers=headers)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get(AGENTS, params=params, headers=headers)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [agent["id"] for agent in reversed(created)]
    disabled = await client.get(AGENTS, params={"status": "disabled"}, headers=headers)
    assert [item["name"] for item in disabled.json()["items"]] == ["agent 3", "agent 1"]
    named = await client.get(AGENTS, params={"name": "agent 2"}, headers=headers)
    assert [item["id"] for item in named.json()["items"]] == [created[2]["id"]]
    assert (await client.get(AGENTS, params={"name": "agent"}, headers=headers)).json()["items"] == []
    assert (await client.get(AGENTS, params={"name": "archived"}, headers=headers)).json()["items"] == []
    for bad in ({"status": "archived"}, {"limit": 0}, {"limit": 201}, {"cursor": "junk"}, {"other": "x"}):
        refused = await client.get(AGENTS, params=bad, headers=headers)
        assert refused.status_code == 422, (bad, refused.text)


async def test_versions_are_paginated_newest_first(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers)
    for index in range(4):
        await client.patch(f"{AGENTS}/{agent['id']}", json={"description": f"d{index}"}, headers=headers)
    path = f"{AGENTS}/{agent['id']}/versions"
    first = (await client.get(path, params={"limit": 3}, headers=headers)).json()
    assert [item["version"] for item in first["items"]] == [5, 4, 3]
    rest = (
        await client.get(path, params={"limit": 3, "cursor": first["next_cursor"]}, headers=headers)
    ).json()
    assert [item["version"] for item in rest["items"]] == [2, 1]
    assert rest["next_cursor"] is None
    for cursor in ("junk", "eyJ2IjoxMDAwMDAwMDAwMDAwMDAwfQ", "eyJ2IjoidHdvIn0"):
        # junk, {"v": 10**15} and {"v": "two"}
        assert (await client.get(path, params={"cursor": cursor}, headers=headers)).status_code == 422


async def test_each_change_is_audited_once_with_complete_fields(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await owner(client)
    me = (await client.get("/auth/me", headers=headers)).json()
    agent = await create_agent(client, headers, **FULL)
    path = f"{AGENTS}/{agent['id']}"
    await client.patch(
        path, json={"system_prompt": "SECRET-ISH PROMPT TEXT", "status": "active"}, headers=headers
    )
    await client.patch(path, json={"status": "active"}, headers=headers)  # no change: no record
    await client.delete(path, headers=headers)
    rows = await audit_rows(app, "agent_created", "agent_updated", "agent_deleted")
    assert [row.action for row in rows] == ["agent_created", "agent_updated", "agent_deleted"]
    for row in rows:
        assert str(row.user_id) == me["id"]
        assert row.org_id is not None
        assert row.actor_type == "user"
        assert row.resource_type == "agent"
        assert row.resource_id == agent["id"]
        assert row.status == "success"
        assert row.ip_address
        assert row.user_agent
        assert row.request_id
    created, updated, deleted = (row.details for row in rows)
    assert created == {
        "name": "researcher",
        "model": "openai:gpt-4o-mini",
        "version": 1,
        "tools": ["calculator", "http_get"],
    }
    assert updated == {"name": "researcher", "version": 2, "changed": ["system_prompt", "status"]}
    assert deleted == {"name": "researcher", "version": 2}
    assert all("SECRET-ISH" not in str(row.details) for row in rows)
    assert all(FULL["system_prompt"] not in str(row.details) for row in rows)


async def test_a_failed_change_writes_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    await create_agent(client, headers, name="taken")
    agent = await create_agent(client, headers, name="mine")
    refused = await client.patch(
        f"{AGENTS}/{agent['id']}", json={"name": "taken", "description": "new"}, headers=headers
    )
    assert refused.status_code == 409
    current = (await client.get(f"{AGENTS}/{agent['id']}", headers=headers)).json()
    assert (current["version"], current["description"], current["name"]) == (1, "", "mine")
    assert len(await versions(client, headers, agent["id"])) == 1
    assert await audit_rows(app, "agent_updated") == []
    assert len(await audit_rows(app, "agent_created")) == 2
