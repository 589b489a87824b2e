"""Provider tests: an encryption key configured, the auth limit lifted (many users log in)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.security.secretbox import generate_key
from tests.support.databases import REDIS_URL

Served = tuple[FastAPI, httpx.AsyncClient]


def provider_key() -> str:
    """An API key in OpenAI's shape, which the suite-wide secret scan recognises."""
    return f"sk-test-{secrets.token_urlsafe(30)}"


@pytest.fixture(scope="session")
def key_a() -> str:
    return generate_key()


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings], key_a: str) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_auth="1000/minute",
        secrets_encryption_keys=key_a,
    )


@pytest.fixture
def serve(settings: Settings) -> Callable[..., AbstractAsyncContextManager[Served]]:
    """`async with serve(keys=[...]) as (app, http)`: the same database, other encryption keys
    (a restart of the deployment with a changed SECRETS_ENCRYPTION_KEYS)."""

    @asynccontextmanager
    async def build(keys: list[str], **overrides: Any) -> AsyncIterator[Served]:
        update = {"secrets_encryption_keys": [SecretStr(key) for key in keys], **overrides}
        app = create_app(settings.model_copy(update=update))
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield app, http

    return build
