"""Every error is RFC 9457 problem+json with a request id, and never leaks internals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import BaseModel, ConfigDict, Field

from agentkeep.app import create_app
from agentkeep.config import Settings

PROBLEM = "application/problem+json"


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=10)
    count: int


@pytest.fixture
async def error_client(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url=sqlite_url))

    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    @app.post("/_test/echo")
    async def echo(payload: Payload) -> Payload:
        return payload

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert str(body["type"]).startswith("urn:agentkeep:problem:")
    assert body["request_id"] == response.headers["x-request-id"]
    return dict(body)


async def test_unknown_path_is_a_404_problem(error_client: httpx.AsyncClient) -> None:
    assert_problem(await error_client.get("/no/such/thing"), 404)


async def test_wrong_method_is_a_405_problem(error_client: httpx.AsyncClient) -> None:
    response = await error_client.delete("/health/live")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


async def test_validation_error_is_a_422_problem_listing_fields(error_client: httpx.AsyncClient) -> None:
    response = await error_client.post("/_test/echo", json={"name": "x" * 11, "extra": 1})
    body = assert_problem(response, 422)
    locations = {tuple(error["loc"]) for error in body["errors"]}  # type: ignore[attr-defined]
    assert ("body", "name") in locations
    assert ("body", "count") in locations
    assert ("body", "extra") in locations
    assert "xxxxxxxxxxx" not in response.text


async def test_malformed_json_is_a_422_problem(error_client: httpx.AsyncClient) -> None:
    response = await error_client.post(
        "/_test/echo", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_unhandled_error_is_a_bare_500_problem(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/_test/boom")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert body["request_id"]


async def test_500_still_carries_cors_headers_for_listed_origins(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/_test/boom", headers={"Origin": "http://localhost:3000"})
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_sane_client_request_id_is_echoed(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/health/live", headers={"X-Request-ID": "client-id-12345"})
    assert response.headers["x-request-id"] == "client-id-12345"


@pytest.mark.parametrize(
    "bad", ["short", "has space in it", "x" * 200, "inject\\r\\nheader", "<script>x</script>"]
)
async def test_insane_client_request_id_is_replaced(error_client: httpx.AsyncClient, bad: str) -> None:
    response = await error_client.get("/no/such", headers={"X-Request-ID": bad})
    assert response.headers["x-request-id"] != bad
    assert len(response.headers["x-request-id"]) == 32
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_every_response_has_a_fresh_request_id(error_client: httpx.AsyncClient) -> None:
    ids = {(await error_client.get("/health/live")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
