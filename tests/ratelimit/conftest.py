"""Test apps with test-only routes that carry the production rate limit dependencies."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.ratelimit.dependency import LoginThrottleDep, principal_key, rate_limit
from agentkeep.ratelimit.errors import RateLimitDecision
from agentkeep.ratelimit.limiter import RateLimitedEvent, RateLimiter
from agentkeep.ratelimit.rules import RuleName
from tests.support.databases import truncate_all


@dataclass(frozen=True)
class FakePrincipal:
    id: uuid.UUID


def principal_from_path(user_id: uuid.UUID) -> FakePrincipal:
    # Stands in for the current-user dependency, which authentication provides.
    return FakePrincipal(id=user_id)


user_key = principal_key(principal_from_path)


def add_test_routes(app: FastAPI) -> None:
    @app.post("/_test/login")
    async def login(
        decision: Annotated[RateLimitDecision, Depends(rate_limit(RuleName.AUTH, report_remaining=True))],
    ) -> dict[str, Any]:
        return {"remaining": decision.remaining}

    @app.get("/_test/users/{user_id}/things")
    async def things(
        user_id: uuid.UUID,
        decision: Annotated[RateLimitDecision, Depends(rate_limit(RuleName.API, key=user_key))],
    ) -> dict[str, Any]:
        return {"remaining": decision.remaining}

    @app.post("/_test/accounts/{username}/failures")
    async def fail_login(username: str, throttle: LoginThrottleDep) -> dict[str, Any]:
        # What the login service will do on a wrong password, through the app's own throttle.
        locked_now = await throttle.register_failure(username)
        return {"locked_now": locked_now, "retry_after": await throttle.is_locked(username)}

    @app.post(
        "/_test/users/{user_id}/runs",
        dependencies=[
            Depends(rate_limit(RuleName.API, key=user_key)),
            Depends(rate_limit(RuleName.RUNS, key=user_key)),
        ],
    )
    async def runs(user_id: uuid.UUID) -> dict[str, str]:
        return {"run": "queued"}


@dataclass
class LimitedApp:
    http: httpx.AsyncClient
    app: FastAPI
    events: list[RateLimitedEvent]

    @property
    def limiter(self) -> RateLimiter:
        limiter: RateLimiter = self.app.state.rate_limiter
        return limiter


@asynccontextmanager
async def limited_app(
    settings: Settings, *, client: tuple[str, int] = ("203.0.113.7", 50000)
) -> AsyncIterator[LimitedApp]:
    """An app with the test routes, served in-process from the given client address."""
    app = create_app(settings)
    add_test_routes(app)
    events: list[RateLimitedEvent] = []
    async with LifespanManager(app) as manager:

        async def record(event: RateLimitedEvent) -> None:
            events.append(event)

        app.state.rate_limiter.add_listener(record)
        transport = httpx.ASGITransport(app=manager.app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield LimitedApp(http=http, app=app, events=events)


@pytest.fixture(autouse=True)
async def _empty_the_shared_sqlite_file(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Tests here that use the session's SQLite file directly (not through `database_url`)
    leave audit records in it (`rate_limited`...): empty it, as `database_url` does, so no
    later test counts them."""
    yield
    if "sqlite_url" in request.fixturenames:
        await truncate_all(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def limit_settings(settings: Settings) -> Callable[..., Settings]:
    """The backend's settings (memory on sqlite, Redis on postgres) with other limits."""

    def build(**overrides: Any) -> Settings:
        return settings.model_copy(update=overrides)

    return build
