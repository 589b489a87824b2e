"""Events from state changes reach subscribed webhooks: a run's end (by the runner), a queued
run cancelled, a thread created, an agent changed. Only enabled webhooks that subscribe to an
event get it, and run output only goes to webhooks that opted in."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from agentkeep.rbac.permissions import Role
from tests.agents.helpers import create_agent
from tests.orgs.helpers import make_team
from tests.support.timing import eventually
from tests.webhooks.conftest import Receiver
from tests.webhooks.helpers import create_hook, received_count

pytestmark = pytest.mark.usefixtures("worker")


def bodies(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in requests]


async def test_a_completed_run_is_announced_with_its_ids_and_status(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    plain = await create_hook(client, team.org_id, owner, receiver.url("/plain"))
    content = await create_hook(client, team.org_id, owner, receiver.url("/content"), include_content=True)
    await create_hook(client, team.org_id, owner, receiver.url("/threads"), events=["thread.created"])
    await create_hook(client, team.org_id, owner, receiver.url("/disabled"), enabled=False)
    receiver.control(secrets=[plain["secret"], content["secret"]])
    agent = await create_agent(client, owner)
    run = await client.post(f"/api/agents/{agent['id']}/runs", json={"input": "hello"}, headers=owner)
    assert run.status_code == 202, run.text
    requests = await received_count(receiver, 2, within=30)
    by_path = {r["path"]: r for r in requests}
    assert set(by_path) == {"/plain", "/content"}
    assert by_path["/plain"]["verified"] == [True, False]
    assert by_path["/content"]["verified"] == [False, True]
    plain_body, content_body = json.loads(by_path["/plain"]["body"]), json.loads(by_path["/content"]["body"])
    assert plain_body["type"] == content_body["type"] == "run.completed"
    assert plain_body["data"]["run_id"] == run.json()["id"]
    assert plain_body["data"]["status"] == "completed"
    assert "output" not in plain_body["data"]
    assert isinstance(content_body["data"]["output"], str)
    # One event: the same webhook-id at every endpoint it goes to.
    assert by_path["/plain"]["headers"]["webhook-id"] == by_path["/content"]["headers"]["webhook-id"]


async def test_threads_and_agent_changes_are_announced_to_their_subscribers(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(
        client, team.org_id, owner, receiver.url(), events=["thread.created", "agent.updated"]
    )
    receiver.control(secrets=[hook["secret"]])
    agent = await create_agent(client, owner)
    thread = await client.post("/api/threads", json={"agent_id": agent["id"]}, headers=owner)
    assert thread.status_code == 201, thread.text
    changed = await client.patch(f"/api/agents/{agent['id']}", json={"description": "changed"}, headers=owner)
    assert changed.status_code == 200, changed.text
    requests = await received_count(receiver, 2, within=30)
    events = {b["type"]: b["data"] for b in bodies(requests)}
    assert events["thread.created"]["thread_id"] == thread.json()["id"]
    assert events["thread.created"]["agent_id"] == agent["id"]
    assert events["agent.updated"]["agent_id"] == agent["id"]
    assert events["agent.updated"]["changed"] == ["description"]
    assert all(r["verified"] == [True] for r in requests)


async def test_a_refused_change_announces_nothing(client: httpx.AsyncClient, receiver: Receiver) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url(), events=["agent.updated"])
    receiver.control(secrets=[hook["secret"]])
    agent = await create_agent(client, owner)
    refused = await client.patch(
        f"/api/agents/{agent['id']}", json={"description": "x"}, headers={**owner, "If-Match": '"9"'}
    )
    assert refused.status_code == 412
    changed = await client.patch(f"/api/agents/{agent['id']}", json={"description": "y"}, headers=owner)
    assert changed.status_code == 200
    (request,) = await received_count(receiver, 1, within=30)
    assert json.loads(request["body"])["data"]["changed"] == ["description"]

    async def more() -> bool:
        return len(receiver.received()) > 1

    assert not await eventually(more, within=1.0)


async def test_a_run_waiting_for_approval_and_its_expiry_are_announced(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(
        client, team.org_id, owner, receiver.url(), events=["run.requires_action", "run.expired"]
    )
    receiver.control(secrets=[hook["secret"]])
    agent = await create_agent(
        client,
        owner,
        name="careful",
        tools=[{"name": "calculator", "approval": "always"}],
        approval_timeout_seconds=10,
    )
    run = await client.post(f"/api/agents/{agent['id']}/runs", json={"input": "what is 2+3"}, headers=owner)
    assert run.status_code == 202, run.text
    requests = await received_count(receiver, 2, within=60)
    (waiting, expired) = bodies(requests)
    assert waiting["type"] == "run.requires_action"
    assert waiting["data"]["run_id"] == run.json()["id"]
    (pending,) = waiting["data"]["pending"]
    assert pending["tool"] == "calculator"
    assert "2+3" not in requests[0]["body"]  # the call's arguments are run content
    assert expired["type"] == "run.expired"
    assert expired["data"]["stop_reason"] == "expired"
    assert all(r["verified"] == [True] for r in requests)
