"""Delivery to a real receiver that verifies each request with `standardwebhooks`: valid
signatures, retries that keep the `webhook-id`, a schedule from settings, final failure,
disabling after repeated failure, and a redelivery."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agentkeep.rbac.permissions import Role
from tests.integration.conftest import audit_rows
from tests.orgs.helpers import make_team
from tests.support.throwaway import free_port
from tests.webhooks.conftest import Receiver, Sender
from tests.webhooks.helpers import create_hook, deliveries, hooks_path, received_count, settled

pytestmark = pytest.mark.usefixtures("worker")


async def test_a_ping_arrives_signed_as_standard_webhooks_specifies(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url())
    assert hook["secret"].startswith("whsec_")
    receiver.control(secrets=[hook["secret"], "whsec_" + "A" * 43 + "="])
    ping = await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    assert ping.status_code == 202, ping.text
    (request,) = await received_count(receiver, 1, within=15)
    assert request["verified"] == [True, False]
    assert request["headers"]["webhook-id"] == ping.json()["message_id"]
    assert request["headers"]["content-type"] == "application/json"
    body = json.loads(request["body"])
    assert body["type"] == "webhook.ping"
    assert body["data"] == {"webhook_id": hook["id"]}
    (logged,) = await settled(client, team.org_id, owner, hook["id"], 1, within=15)
    assert logged["status"] == "succeeded"
    assert logged["attempts"] == 1
    assert logged["response_status"] == 204
    assert logged["latency_ms"] is not None


async def test_a_receiver_failing_twice_gets_the_same_webhook_id_three_times(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url())
    receiver.control(secrets=[hook["secret"]], fail=2, status=503)
    await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    requests = await received_count(receiver, 3, within=20)
    assert [r["status"] for r in requests] == [503, 503, 204]
    assert len({r["headers"]["webhook-id"] for r in requests}) == 1
    assert all(r["verified"] == [True] for r in requests)
    assert len({r["body"] for r in requests}) == 1
    (logged,) = await settled(client, team.org_id, owner, hook["id"], 1, within=15)
    assert logged["status"] == "succeeded"
    assert logged["attempts"] == 3


@pytest.mark.parametrize("webhook_settings", [{"webhook_retry_schedule": "1,2"}])
async def test_a_receiver_that_is_down_is_retried_on_schedule_then_failed(
    client: httpx.AsyncClient, webhook_settings: dict[str, Any]
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, f"http://127.0.0.1:{free_port()}/hook")
    await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    (logged,) = await settled(client, team.org_id, owner, hook["id"], 1, within=30)
    assert logged["status"] == "failed"
    assert logged["attempts"] == 3  # the first attempt and one per pause of the schedule
    assert logged["response_status"] is None
    assert logged["error"]


async def test_the_schedule_spaces_attempts_as_configured(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # FAST_RETRIES pauses 0.3 s with +/-20% jitter: attempts are at least 0.24 s apart.
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url())
    receiver.control(secrets=[hook["secret"]], fail=5, status=500)
    await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    requests = await received_count(receiver, 3, within=20)
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(requests)]
    assert all(gap >= 0.24 for gap in gaps), gaps
    (logged,) = await settled(client, team.org_id, owner, hook["id"], 1, within=15)
    assert logged["status"] == "failed"
    assert logged["response_status"] == 500


@pytest.mark.parametrize(
    "webhook_settings", [{"webhook_retry_schedule": "", "webhook_disable_after_failures": 2}]
)
async def test_repeated_failure_disables_the_webhook_audited_and_counted(
    app: FastAPI,
    client: httpx.AsyncClient,
    receiver: Receiver,
    worker: Sender,
    webhook_settings: dict[str, Any],
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url())
    receiver.control(secrets=[hook["secret"]], fail=10, status=500)
    for expected in (1, 2):
        await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
        await settled(client, team.org_id, owner, hook["id"], expected, within=15)
    read = (await client.get(hooks_path(team.org_id, hook["id"]), headers=owner)).json()
    assert read["enabled"] is False
    assert read["disabled_reason"] == "consecutive_failures"
    assert read["consecutive_failures"] == 2
    (disabled,) = await audit_rows(app, "webhook_disabled")
    assert str(disabled.resource_id) == hook["id"]
    metrics = worker.metrics()
    assert "agentkeep_webhooks_disabled_total 1.0" in metrics
    assert 'agentkeep_webhook_deliveries_total{outcome="failed"} 2.0' in metrics
    assert "agentkeep_webhook_delivery_lag_seconds_count 2.0" in metrics
    enabled = await client.patch(hooks_path(team.org_id, hook["id"]), json={"enabled": True}, headers=owner)
    assert enabled.json()["enabled"] is True
    assert enabled.json()["consecutive_failures"] == 0
    assert enabled.json()["disabled_reason"] is None


async def test_a_redelivery_sends_the_same_event_again_as_a_new_log_entry(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    team = await make_team(client)
    owner = team.headers(Role.OWNER)
    hook = await create_hook(client, team.org_id, owner, receiver.url())
    receiver.control(secrets=[hook["secret"]])
    await client.post(hooks_path(team.org_id, hook["id"], "/ping"), headers=owner)
    (first,) = await settled(client, team.org_id, owner, hook["id"], 1, within=15)
    again = await client.post(
        hooks_path(team.org_id, hook["id"], f"/deliveries/{first['id']}/redeliver"), headers=owner
    )
    assert again.status_code == 202, again.text
    assert again.json()["redelivery_of"] == first["id"]
    requests = await received_count(receiver, 2, within=15)
    assert requests[0]["headers"]["webhook-id"] == requests[1]["headers"]["webhook-id"]
    assert requests[0]["body"] == requests[1]["body"]
    assert all(r["verified"] == [True] for r in requests)
    logged = await settled(client, team.org_id, owner, hook["id"], 2, within=15)
    assert {d["status"] for d in logged} == {"succeeded"}


async def test_the_delivery_log_of_another_organization_is_not_found(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    acme = await make_team(client, "acme", "olivia")
    globex = await make_team(client, "globex", "gus")
    hook = await create_hook(client, acme.org_id, acme.headers(Role.OWNER), receiver.url())
    for path in (
        hooks_path(globex.org_id, hook["id"], "/deliveries"),
        hooks_path(acme.org_id, hook["id"], "/deliveries"),
    ):
        answer = await client.get(path, headers=globex.headers(Role.OWNER))
        assert answer.status_code == 404
    assert await deliveries(client, acme.org_id, acme.headers(Role.OWNER), hook["id"]) == []
