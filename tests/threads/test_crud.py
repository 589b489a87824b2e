"""Create, read, change and delete threads, with idempotent creates and audit records."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from tests.agents.helpers import owner
from tests.integration.conftest import audit_rows
from tests.threads.helpers import PROBLEM_JSON, THREADS, an_agent, create_thread


async def test_create_answers_201_with_the_thread_and_its_location(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent_id = await an_agent(client, headers)
    body = {"agent_id": agent_id, "title": "  Trip planning  ", "metadata": {"channel": "web", "n": [1, 2]}}
    response = await client.post(THREADS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    thread = response.json()
    assert response.headers["location"] == f"{THREADS}/{thread['id']}"
    assert "idempotent-replayed" not in response.headers
    assert thread["agent_id"] == agent_id
    assert thread["agent_version"] is None
    assert thread["title"] == "Trip planning"
    assert thread["metadata"] == {"channel": "web", "n": [1, 2]}
    assert thread["created_by_api_key_id"] is None
    assert thread["created_at"] == thread["updated_at"] == thread["last_activity_at"]
    me = (await client.get("/auth/me", headers=headers)).json()
    assert thread["created_by_user_id"] == me["id"]
    fetched = await client.get(f"{THREADS}/{thread['id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == thread


async def test_a_minimal_thread_is_untitled_without_metadata(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    thread = await create_thread(client, headers, await an_agent(client, headers))
    assert (thread["title"], thread["metadata"]) == ("", {})


async def test_a_thread_may_pin_an_existing_version_only(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent_id = await an_agent(client, headers)
    changed = await client.patch(f"/api/agents/{agent_id}", json={"description": "v2"}, headers=headers)
    assert changed.status_code == 200
    pinned = await create_thread(client, headers, agent_id, agent_version=1)
    assert pinned["agent_version"] == 1
    missing = await client.post(THREADS, json={"agent_id": agent_id, "agent_version": 3}, headers=headers)
    assert missing.status_code == 422
    assert missing.json()["type"] == "urn:agentkeep:problem:agent-version-not-found"


async def test_patch_changes_title_and_replaces_metadata(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    thread = await create_thread(client, headers, await an_agent(client, headers), metadata={"a": 1, "b": 2})
    path = f"{THREADS}/{thread['id']}"
    renamed = await client.patch(path, json={"title": "Renamed"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["title"] == "Renamed"
    assert renamed.json()["metadata"] == {"a": 1, "b": 2}
    assert renamed.json()["updated_at"] > thread["updated_at"]
    # Editing is not conversation activity: the list order does not change.
    assert renamed.json()["last_activity_at"] == thread["last_activity_at"]
    replaced = await client.patch(path, json={"metadata": {"c": 3}}, headers=headers)
    assert replaced.json()["metadata"] == {"c": 3}
    assert replaced.json()["title"] == "Renamed"
    assert (await client.get(path, headers=headers)).json() == replaced.json()


async def test_delete_answers_204_then_the_thread_is_gone(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent_id = await an_agent(client, headers)
    thread = await create_thread(client, headers, agent_id, title="private words")
    path = f"{THREADS}/{thread['id']}"
    assert (await client.delete(path, headers=headers)).status_code == 204
    for response in (
        await client.get(path, headers=headers),
        await client.patch(path, json={"title": "x"}, headers=headers),
        await client.delete(path, headers=headers),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
    records = await audit_rows(app, "thread_created", "thread_deleted")
    assert [(row.action, row.resource_type, row.resource_id) for row in records] == [
        ("thread_created", "thread", thread["id"]),
        ("thread_deleted", "thread", thread["id"]),
    ]
    assert records[0].details["agent_id"] == agent_id
    # The title is the user's words; the trail keeps the fact, not the content.
    assert all("private words" not in str(row.details) for row in records)


async def test_the_same_idempotency_key_and_body_answer_the_same_thread(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent_id = await an_agent(client, headers)
    key = {"Idempotency-Key": "thread-create-1", **headers}
    body = {"agent_id": agent_id, "title": "once"}
    first = await client.post(THREADS, json=body, headers=key)
    again = await client.post(THREADS, json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await client.post(THREADS, json={**body, "title": "twice"}, headers=key)
    assert other.status_code == 409
    listed = (await client.get(THREADS, headers=headers)).json()["items"]
    assert [item["id"] for item in listed] == [first.json()["id"]]
    assert (await client.delete(f"{THREADS}/{first.json()['id']}", headers=headers)).status_code == 204
    gone = await client.post(THREADS, json=body, headers=key)
    assert gone.status_code == 409
    assert gone.headers["content-type"].startswith(PROBLEM_JSON)


async def test_an_archived_or_unknown_agent_is_refused_and_nothing_is_written(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await owner(client)
    archived = await an_agent(client, headers, name="retired")
    assert (await client.delete(f"/api/agents/{archived}", headers=headers)).status_code == 204
    refused = await client.post(THREADS, json={"agent_id": archived}, headers=headers)
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:agentkeep:problem:agent-archived"
    unknown = await client.post(THREADS, json={"agent_id": str(uuid.uuid4())}, headers=headers)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith(PROBLEM_JSON)
    stranger = await owner(client, "stranger")
    theirs = await an_agent(client, stranger, name="theirs")
    across = await client.post(THREADS, json={"agent_id": theirs}, headers=headers)
    assert across.status_code == 404
    assert (await client.get(THREADS, headers=headers)).json()["items"] == []
    assert await audit_rows(app, "thread_created") == []
