"""Structured logs: one JSON object per line, with the request id, no stack locals."""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.observability.logging import configure_logging
from tests.support.scan_plugin import restore_test_logging
from tests.support.server import running_server
from tests.support.timing import SCHEDULING_MARGIN_SECONDS

REQUESTS = 20


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


@pytest.mark.parametrize(("level", "libraries_at_info"), [("INFO", False), ("DEBUG", True)])
def test_libraries_log_each_request_or_job_only_at_debug(
    request: pytest.FixtureRequest, level: str, libraries_at_info: bool
) -> None:
    """docs/OPERATIONS.md, "Logs": held at WARNING unless LOG_LEVEL is DEBUG."""
    stream = io.StringIO()
    libraries = ("httpx", "httpx2", "httpcore", "openai", "procrastinate.worker.vm:1:worker:a")
    configure_logging(level, "json", stream)
    try:
        for name in libraries:
            logging.getLogger(name).info("per request")
            logging.getLogger(name).warning("trouble")
        logging.getLogger("agentkeep.worker").info("run_ended")
    finally:
        restore_test_logging(request.config)
    # Only the loggers written to here: at DEBUG, a connection an earlier test left to the
    # garbage collector may log its close from its own thread meanwhile.
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    events = [line["event"] for line in lines if line["logger"] in {*libraries, "agentkeep.worker"}]
    expected = ["per request", "trouble"] if libraries_at_info else ["trouble"]
    assert events == expected * 5 + ["run_ended"]


@pytest.mark.slow
def test_serve_with_two_workers_logs_each_request_once() -> None:
    """docs/OPERATIONS.md, "Logs": one access event per request, uvicorn's own access log off,
    in every worker process of `serve --workers 2`."""
    request_ids = [f"once-{index:03d}-{secrets.token_hex(4)}" for index in range(REQUESTS)]
    with running_server(workers=2) as server:
        for request_id in request_ids:
            # A new connection each time, so the requests spread over both workers.
            headers = {"X-Request-ID": request_id, "Connection": "close"}
            assert httpx.get(f"{server.base_url}/health/live", headers=headers, timeout=30).status_code == 200
        # uvicorn would write its access line as the response starts, before ours, in the same
        # process: once ours is there for every request, any duplicate would be too.
        deadline = time.monotonic() + SCHEDULING_MARGIN_SECONDS
        while len(_access_lines(server.log(), request_ids)) < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = _access_lines(server.log(), request_ids)
    assert sorted(str(line["request_id"]) for line in lines) == sorted(request_ids)
    assert {(line["logger"], line["event"], line["route"]) for line in lines} == {
        ("agentkeep.access", "request", "/health/live")
    }


def _access_lines(log: str, request_ids: list[str]) -> list[dict[str, object]]:
    """Every line of the log about one of these requests."""
    wanted = set(request_ids)
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [event for event in events if event.get("request_id") in wanted]
