"""Expired idempotency keys are deleted: in bounded batches, and by `serve` on its own.

The retention comes from docs/agents.md (keys are kept 24 hours); rows are aged by writing
their `created_at`, as time would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.idempotency.models import IdempotencyKey
from agentkeep.idempotency.purge import purge_expired_keys
from tests.agents.helpers import AGENTS, agent_body, owner

RETENTION = timedelta(hours=24)


async def _org_id(client: httpx.AsyncClient, headers: dict[str, str]) -> uuid.UUID:
    [org] = (await client.get("/api/orgs", headers=headers)).json()["items"]
    return uuid.UUID(org["id"])


async def _add_keys(app: FastAPI, org_id: uuid.UUID, prefix: str, count: int, age: timedelta) -> None:
    created = datetime.now(UTC) - age
    async with app.state.sessionmaker() as session, session.begin():
        session.add_all(
            IdempotencyKey(
                org_id=org_id,
                principal=f"user:{uuid.uuid4()}",
                scope="agents.create",
                key=f"{prefix}-{number}",
                fingerprint="0" * 64,
                resource_id=uuid.uuid4(),
                created_at=created,
            )
            for number in range(count)
        )


async def _keys(app: FastAPI) -> list[str]:
    async with app.state.sessionmaker() as session:
        return sorted((await session.scalars(select(IdempotencyKey.key))).all())


async def test_keys_past_their_retention_are_purged_in_batches_and_younger_ones_kept(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await owner(client)
    created = await client.post(AGENTS, json=agent_body(), headers={**headers, "Idempotency-Key": "live"})
    assert created.status_code == 201
    org_id = await _org_id(client, headers)
    await _add_keys(app, org_id, "old", 23, RETENTION + timedelta(minutes=5))
    await _add_keys(app, org_id, "young", 2, RETENTION - timedelta(minutes=5))

    assert await purge_expired_keys(app.state.sessionmaker, batch_size=5) == 23
    assert await _keys(app) == ["live", "young-0", "young-1"]
    assert await purge_expired_keys(app.state.sessionmaker, batch_size=5) == 0

    # The key still answers retries of its create.
    again = await client.post(AGENTS, json=agent_body(), headers={**headers, "Idempotency-Key": "live"})
    assert again.headers["idempotent-replayed"] == "true"


async def test_serve_purges_expired_keys_in_the_background(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, make_settings: Callable[..., Settings]
) -> None:
    headers = await owner(client)
    await _add_keys(app, await _org_id(client, headers), "old", 7, RETENTION + timedelta(minutes=5))
    assert len(await _keys(app)) == 7

    # Another instance on the same database: its first purge pass runs when it starts.
    other = create_app(make_settings(database_url=settings.database_url))
    async with LifespanManager(other):
        deadline = time.monotonic() + 30
        remaining = await _keys(app)
        while remaining and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            remaining = await _keys(app)
    assert remaining == []
