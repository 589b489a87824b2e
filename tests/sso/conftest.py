"""Fixtures of the SSO tests: the real OpenID provider, and AgentKeep apps configured for it."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.orgs.models import Organization
from tests.sso.browser import APP_ORIGIN
from tests.sso.peer import CLIENT_ID, OpenIdProvider, running_provider
from tests.support.databases import REDIS_URL

PROVIDER = "test"
CALLBACKS = [f"{APP_ORIGIN}/auth/oidc/{name}/callback" for name in (PROVIDER, "other")]


@pytest.fixture(scope="session")
def provider_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openid-provider")


@pytest.fixture(scope="session")
def op(provider_dir: Path) -> Iterator[OpenIdProvider]:
    """The provider most tests sign in through (one process for the session)."""
    with running_provider(provider_dir, CALLBACKS) as provider:
        yield provider


@pytest.fixture
def start_provider(provider_dir: Path) -> Iterator[Callable[..., OpenIdProvider]]:
    """Start another provider for one test (another issuer, key or clock)."""
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> OpenIdProvider:
            return stack.enter_context(running_provider(provider_dir, CALLBACKS, **options))

        yield start


def provider_entry(
    op: OpenIdProvider, *, name: str = PROVIDER, issuer: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "display_name": "Test provider",
        "issuer": issuer or op.issuer,
        "client_id": CLIENT_ID,
        "client_secret": op.client_secret,
        "scopes": ["openid", "email", "profile", "groups"],
        **extra,
    }


@dataclass(frozen=True)
class AuditRow:
    status: str
    details: dict[str, Any]


@dataclass
class SsoApp:
    client: httpx.AsyncClient
    app: FastAPI

    async def sql(self, statement: str, **parameters: Any) -> list[Any]:
        async with self.app.state.sessionmaker() as session:
            return list((await session.execute(text(statement), parameters)).all())

    async def create_org(self, slug: str) -> uuid.UUID:
        async with self.app.state.sessionmaker() as session, session.begin():
            org = Organization(id=uuid.uuid4(), name=slug.title(), slug=slug)
            session.add(org)
        return org.id

    async def audit(self, action: str) -> list[AuditRow]:
        rows = await self.sql(
            "SELECT status, details FROM audit_logs WHERE action = :action ORDER BY timestamp", action=action
        )
        # SQLite hands JSON columns back as text in a plain SQL query.
        return [
            AuditRow(row.status, json.loads(row.details) if isinstance(row.details, str) else row.details)
            for row in rows
        ]

    async def roles(self, access_token: str) -> dict[str, str]:
        response = await self.client.get("/api/orgs", headers=bearer(access_token))
        assert response.status_code == 200, response.text
        return {item["slug"]: item["role"] for item in response.json()["items"] if not item["is_personal"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SsoAppFactory = Callable[..., contextlib.AbstractAsyncContextManager[SsoApp]]


@pytest.fixture
def sso_app(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> SsoAppFactory:
    """`async with sso_app(providers=[...], **settings) as sso:` an app on the test's database."""

    @contextlib.asynccontextmanager
    async def build(providers: list[dict[str, Any]], **overrides: Any) -> AsyncIterator[SsoApp]:
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": REDIS_URL if backend == "postgres" else None,
            "oidc_providers": providers,
            "oidc_allowed_networks": ["127.0.0.1"],
            "rate_limit_auth": "1000/minute",
        }
        values.update(overrides)
        app = create_app(make_settings(**values))
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url=APP_ORIGIN) as client:
                yield SsoApp(client, app)

    return build
