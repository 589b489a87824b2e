"""Structured logs: one JSON object per line, with the request id, no stack locals."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.observability.logging import configure_logging
from tests.support.scan_plugin import restore_test_logging


@pytest.fixture
def json_logs(request: pytest.FixtureRequest) -> Iterator[Callable[[], list[dict[str, object]]]]:
    root = logging.getLogger()
    saved_level = root.level
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    restore_test_logging(request.config)
    root.setLevel(saved_level)


async def test_each_request_logs_one_json_line_with_its_request_id(
    json_logs: Callable[[], list[dict[str, object]]], sqlite_url: str, make_settings: Callable[..., Settings]
) -> None:
    app = create_app(make_settings(database_url=sqlite_url))

    @app.get("/_test/fail")
    async def fail() -> None:
        password = "hunter2-do-not-log"  # a local that a pretty traceback would print
        raise RuntimeError(f"failed with {len(password)}")

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            ok = await http.get("/health/live", headers={"X-Request-ID": "req-12345678"})
            failed = await http.get("/_test/fail")
    events = json_logs()
    access = [event for event in events if event.get("event") == "request"]
    assert {"req-12345678", failed.headers["x-request-id"]} <= {str(event["request_id"]) for event in access}
    live = next(event for event in access if event["request_id"] == "req-12345678")
    assert live["route"] == "/health/live"
    assert live["status"] == ok.status_code == 200
    errors = [event for event in events if event.get("event") == "unhandled_error"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == failed.headers["x-request-id"]
    assert "hunter2-do-not-log" not in json.dumps(events)
