"""Security headers on every response class; HSTS in production; body size limit (413)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import BaseModel

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.security.secretbox import generate_key


class Blob(BaseModel):
    data: str


@pytest.fixture
async def headers_client(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url=sqlite_url, max_body_bytes=2048))

    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.post("/_test/blob")
    async def blob(payload: Blob) -> dict[str, int]:
        return {"size": len(payload.data)}

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def _responses(http: httpx.AsyncClient) -> dict[str, httpx.Response]:
    return {
        "2xx": await http.get("/health/live"),
        "4xx": await http.get("/nope"),
        "5xx": await http.get("/_test/boom"),
        "options": await http.options(
            "/health/live",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
        ),
        "413": await http.post("/_test/blob", json={"data": "x" * 5000}),
    }


async def test_every_response_class_carries_the_security_headers(headers_client: httpx.AsyncClient) -> None:
    for kind, response in (await _responses(headers_client)).items():
        assert response.headers["x-content-type-options"] == "nosniff", kind
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'", (
            kind
        )
        assert response.headers["referrer-policy"] == "no-referrer", kind
        assert response.headers["x-frame-options"] == "DENY", kind
        assert "server" not in response.headers, kind
        assert "strict-transport-security" not in response.headers, kind


async def test_docs_pages_get_a_csp_that_lets_them_render(headers_client: httpx.AsyncClient) -> None:
    response = await headers_client.get("/docs")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src" in csp
    assert "frame-ancestors 'none'" in csp


async def test_hsts_and_no_docs_in_production(make_settings: Callable[..., Settings]) -> None:
    # A valid production configuration; the database is never touched by these requests.
    settings = make_settings(
        environment="production",
        database_url="postgresql+asyncpg://u@127.0.0.1:1/x",
        redis_url="redis://127.0.0.1:1/0",
        allowed_hosts="testserver",
        cors_origins="https://app.example",
        secrets_encryption_keys=generate_key(),
        audit_hmac_key=secrets.token_urlsafe(40),
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/health/live")
            assert response.headers["strict-transport-security"].startswith("max-age=")
            assert (await http.get("/docs")).status_code == 404
            assert (await http.get("/openapi.json")).status_code == 404


async def test_declared_oversized_body_is_refused_with_413(headers_client: httpx.AsyncClient) -> None:
    response = await headers_client.post("/_test/blob", json={"data": "x" * 5000})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_streamed_oversized_body_is_refused_without_reading_it_whole(
    headers_client: httpx.AsyncClient,
) -> None:
    chunks_sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield b'{"data": "'
        for _ in range(1000):
            chunks_sent += 1
            yield b"x" * 1024
        yield b'"}'

    response = await headers_client.post(
        "/_test/blob", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["status"] == 413
    assert chunks_sent < 100, "the server kept reading past the limit"


async def test_body_within_the_limit_is_served(headers_client: httpx.AsyncClient) -> None:
    response = await headers_client.post("/_test/blob", json={"data": "x" * 1000})
    assert response.status_code == 200
    assert response.json() == {"size": 1000}


async def test_malformed_content_length_is_a_400(headers_client: httpx.AsyncClient) -> None:
    response = await headers_client.post(
        "/_test/blob", content=b"{}", headers={"content-type": "application/json", "content-length": "abc"}
    )
    assert response.status_code == 400
