"""Calls on /api/orgs/{org_id}/webhooks shared by the webhook tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.secret_scan import current_scan
from tests.support.timing import eventually
from tests.webhooks.conftest import Receiver


def hooks_path(org_id: str, webhook_id: str | None = None, tail: str = "") -> str:
    path = f"/api/orgs/{org_id}/webhooks"
    return f"{path}/{webhook_id}{tail}" if webhook_id else path


async def create_hook(
    http: httpx.AsyncClient, org_id: str, headers: dict[str, str], url: str, **fields: Any
) -> dict[str, Any]:
    body = {"url": url, "events": ["run.completed"], **fields}
    response = await http.post(hooks_path(org_id), json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    scan = current_scan()
    if scan is not None:  # the suite-wide scan then fails on any log line or row holding it
        scan.remember(created["secret"].removeprefix("whsec_"), "a webhook signing secret")
    return created


async def deliveries(
    http: httpx.AsyncClient, org_id: str, headers: dict[str, str], webhook_id: str
) -> list[dict[str, Any]]:
    response = await http.get(hooks_path(org_id, webhook_id, "/deliveries"), headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def settled(
    http: httpx.AsyncClient, org_id: str, headers: dict[str, str], webhook_id: str, count: int, within: float
) -> list[dict[str, Any]]:
    """The webhook's deliveries once `count` of them are no longer pending."""
    found: list[dict[str, Any]] = []

    async def done() -> bool:
        nonlocal found
        found = await deliveries(http, org_id, headers, webhook_id)
        return len([d for d in found if d["status"] != "pending"]) >= count

    assert await eventually(done, within=within, every=0.1), found
    return found


async def received_count(receiver: Receiver, count: int, within: float) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        found = receiver.received()
        return len(found) >= count

    assert await eventually(enough, within=within, every=0.1), found
    return found
