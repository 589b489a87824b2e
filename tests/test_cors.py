"""CORS: listed origins get credentials, unlisted origins get nothing, nothing is reflected."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager

from agentkeep.app import create_app
from agentkeep.config import Settings


@pytest.fixture
async def cors_client(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url=sqlite_url, cors_origins="http://localhost:3000,https://app.example"
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.parametrize("origin", ["http://localhost:3000", "https://app.example"])
async def test_listed_origin_is_allowed_with_credentials(cors_client: httpx.AsyncClient, origin: str) -> None:
    response = await cors_client.get("/health/live", headers={"Origin": origin})
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.com",
        "http://localhost:3001",
        "https://app.example.evil.com",
        "null",
        "http://LOCALHOST:3000x",
    ],
)
async def test_unlisted_origin_gets_no_allow_origin(cors_client: httpx.AsyncClient, origin: str) -> None:
    response = await cors_client.get("/health/live", headers={"Origin": origin})
    assert "access-control-allow-origin" not in response.headers
    assert origin not in response.headers.get("access-control-allow-origin", "")


async def test_preflight_from_listed_origin_names_methods_and_headers(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options(
        "/health/live",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "Authorization, Idempotency-Key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "x-request-id"):
        assert header in allowed


async def test_preflight_from_unlisted_origin_is_refused(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options(
        "/health/live",
        headers={"Origin": "https://evil.com", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_with_an_unlisted_header_is_refused(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options(
        "/health/live",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-Custom-Evil",
        },
    )
    assert response.status_code == 400
