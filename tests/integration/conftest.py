"""Fixtures for end-to-end behaviour across domains (auth + audit + rate limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.app import create_app
from agentkeep.audit.models import AuditLog
from agentkeep.config import Settings
from tests.audit.conftest import wait_until_sealed

USER_AGENT = "integration-test/1.0"
Served = tuple[FastAPI, httpx.AsyncClient]


@pytest.fixture
def serve(settings: Settings) -> Callable[..., AbstractAsyncContextManager[Served]]:
    """`async with serve(client_ip=..., **setting_overrides) as (app, http)`: a fresh app."""

    @asynccontextmanager
    async def build(client_ip: str = "203.0.113.10", **overrides: Any) -> AsyncIterator[Served]:
        app = create_app(settings.model_copy(update=overrides))
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app, client=(client_ip, 4711))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", headers={"user-agent": USER_AGENT}
            ) as http:
                yield app, http

    return build


async def audit_rows(app: FastAPI, *actions: str) -> list[AuditLog]:
    """The audit records in chain order, once the app's sealer has chained them all."""
    await wait_until_sealed(app.state.sessionmaker)
    async with app.state.sessionmaker() as session:
        query = select(AuditLog).order_by(AuditLog.sequence)
        if actions:
            query = query.where(AuditLog.action.in_(actions))
        return list((await session.scalars(query)).all())
