"""Retried creates (Idempotency-Key), lost-update protection (If-Match) and concurrent writers."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from agentkeep.agents.models import Agent, AgentVersion
from tests.agents.helpers import AGENTS, agent_body, create_agent, owner, versions
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import create_key, key_header, my_orgs


async def _agent_count(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Agent)) or 0)


async def test_a_retry_with_the_same_key_and_body_answers_the_same_agent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await owner(client)
    keyed = {**headers, "Idempotency-Key": "create-42"}
    first = await client.post(AGENTS, json=agent_body(name="once"), headers=keyed)
    again = await client.post(AGENTS, json=agent_body(name="once"), headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["etag"] == first.headers["etag"]
    # The same body spelled with its defaults is the same request.
    spelled = await client.post(
        AGENTS, json=agent_body(name="once", status="active", tools=[]), headers=keyed
    )
    assert spelled.status_code == 201
    assert spelled.json()["id"] == first.json()["id"]
    assert await _agent_count(app) == 1
    assert len(await audit_rows(app, "agent_created")) == 1


async def test_the_same_key_with_another_body_is_409(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    keyed = {**headers, "Idempotency-Key": "create-43"}
    first = await client.post(AGENTS, json=agent_body(name="one"), headers=keyed)
    assert first.status_code == 201
    other = await client.post(AGENTS, json=agent_body(name="two"), headers=keyed)
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "urn:agentkeep:problem:idempotency-key-reused"
    assert other.json()["resource_id"] == first.json()["id"]
    assert await _agent_count(app) == 1


async def test_keys_belong_to_their_caller(app: FastAPI, client: httpx.AsyncClient) -> None:
    alice, bob = await owner(client, "alice"), await owner(client, "bob")
    shared_key = {"Idempotency-Key": "same-key"}
    mine = await client.post(AGENTS, json=agent_body(name="a"), headers={**alice, **shared_key})
    theirs = await client.post(AGENTS, json=agent_body(name="a"), headers={**bob, **shared_key})
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert "idempotent-replayed" not in theirs.headers
    # An API key of alice's is another principal than alice herself.
    api_key = await create_key(client, alice, ["agents:write", "agents:read"])
    by_key = await client.post(
        AGENTS, json=agent_body(name="b"), headers={**key_header(api_key), **shared_key}
    )
    assert by_key.status_code == 201
    assert "idempotent-replayed" not in by_key.headers
    assert await _agent_count(app) == 3


async def test_a_failed_create_does_not_burn_its_key(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    await create_agent(client, headers, name="taken")
    keyed = {**headers, "Idempotency-Key": "retry-me"}
    clash = await client.post(AGENTS, json=agent_body(name="taken"), headers=keyed)
    assert clash.status_code == 409
    renamed = await client.post(AGENTS, json=agent_body(name="free"), headers=keyed)
    assert renamed.status_code == 201
    assert "idempotent-replayed" not in renamed.headers


async def test_replaying_the_key_of_an_archived_agent_is_409(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    keyed = {**headers, "Idempotency-Key": "gone"}
    first = await client.post(AGENTS, json=agent_body(name="short-lived"), headers=keyed)
    assert (await client.delete(f"{AGENTS}/{first.json()['id']}", headers=headers)).status_code == 204
    replay = await client.post(AGENTS, json=agent_body(name="short-lived"), headers=keyed)
    assert replay.status_code == 409
    assert "since been deleted" in replay.json()["detail"]


async def test_concurrent_creates_with_one_key_make_exactly_one_agent(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    headers = await owner(client)
    keyed = {**headers, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post(AGENTS, json=agent_body(name="burst"), headers=keyed) for _ in range(8))
    )
    statuses = [response.status_code for response in responses]
    assert 500 not in statuses
    created = [response for response in responses if response.status_code == 201]
    if backend == "postgres":
        # The key row serializes them: one creates, the others wait and replay it.
        assert statuses == [201] * 8
        assert sum("idempotent-replayed" not in response.headers for response in created) == 1
    assert len({response.json()["id"] for response in created}) == 1
    assert await _agent_count(app) == 1
    assert len(await audit_rows(app, "agent_created")) == 1


async def test_concurrent_creates_with_one_name_make_one_agent_and_409s(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await owner(client)
    responses = await asyncio.gather(
        *(client.post(AGENTS, json=agent_body(name="race"), headers=headers) for _ in range(6))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 5, [response.text for response in responses]
    assert await _agent_count(app) == 1


async def test_if_match_guards_against_lost_updates(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers)
    path = f"{AGENTS}/{agent['id']}"
    first = await client.patch(path, json={"description": "mine"}, headers={**headers, "If-Match": '"1"'})
    assert first.status_code == 200
    assert first.headers["etag"] == '"2"'
    stale = await client.patch(path, json={"description": "theirs"}, headers={**headers, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.headers["etag"] == '"2"'
    assert stale.json()["current_version"] == 2
    for tag in ('"2"', '"7", "3"', "*"):
        ok = await client.patch(path, json={"system_prompt": tag}, headers={**headers, "If-Match": tag})
        assert ok.status_code == 200, (tag, ok.text)
    for tag in ("2", 'W/"5"', "junk", '"1"'):
        refused = await client.patch(path, json={"description": "x"}, headers={**headers, "If-Match": tag})
        assert refused.status_code == 412, tag
    assert (await client.delete(path, headers={**headers, "If-Match": '"1"'})).status_code == 412
    assert (await client.get(path, headers=headers)).json()["description"] == "mine"
    assert (await client.delete(path, headers={**headers, "If-Match": '"5"'})).status_code == 204


async def test_concurrent_patches_never_share_a_version_number(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers)
    path = f"{AGENTS}/{agent['id']}"
    responses = await asyncio.gather(
        *(client.patch(path, json={"description": f"writer {index}"}, headers=headers) for index in range(8))
    )
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 409}, [response.text for response in responses]
    if backend == "postgres":
        # The row lock applies them one after the other.
        assert statuses == [200] * 8
    applied = [response.json() for response in responses if response.status_code == 200]
    history = await versions(client, headers, agent["id"])
    numbers = [item["version"] for item in history]
    assert numbers == list(range(len(applied) + 1, 0, -1))
    assert sorted(item["version"] for item in applied) == numbers[:-1][::-1]
    current = (await client.get(path, headers=headers)).json()
    assert current["version"] == numbers[0]
    assert current["description"] == history[0]["config"]["description"]
    async with app.state.sessionmaker() as session:
        rows = (
            await session.scalars(
                select(AgentVersion.version).where(AgentVersion.agent_id == uuid.UUID(agent["id"]))
            )
        ).all()
    assert sorted(rows) == sorted(numbers)
    assert len(await audit_rows(app, "agent_updated")) == len(applied)


async def test_concurrent_if_match_writers_one_wins(client: httpx.AsyncClient, backend: str) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers)
    path = f"{AGENTS}/{agent['id']}"
    responses = await asyncio.gather(
        *(
            client.patch(
                path, json={"description": f"writer {index}"}, headers={**headers, "If-Match": '"1"'}
            )
            for index in range(5)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 412}
    if backend == "postgres":
        assert statuses == [200, 412, 412, 412, 412]
    assert [item["version"] for item in await versions(client, headers, agent["id"])] == [2, 1]


async def test_api_key_creates_are_attributed_to_the_key(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    api_key = await create_key(client, headers, ["agents:write"])
    created = await client.post(AGENTS, json=agent_body(name="by key"), headers=key_header(api_key))
    assert created.status_code == 201
    (row,) = await audit_rows(app, "agent_created")
    assert row.actor_type == "api_key"
    assert row.details["key_id"] == api_key["id"]
    org_id = (await my_orgs(client, headers["Authorization"].removeprefix("Bearer ")))[0]["id"]
    assert str(row.org_id) == org_id
