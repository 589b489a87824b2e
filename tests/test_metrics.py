"""GET /metrics: Prometheus text labelled by route template, protected by METRICS_TOKEN."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from agentkeep.app import create_app
from agentkeep.config import Settings

TOKEN = secrets.token_urlsafe(32)


async def _client(settings: Settings, client_ip: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)

    @app.get("/_test/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_ip, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def token_client(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(make_settings(database_url=sqlite_url, metrics_token=TOKEN), "203.0.113.5"):
        yield http


async def test_metrics_are_labelled_by_route_template_not_raw_path(token_client: httpx.AsyncClient) -> None:
    for item_id in ("a1", "b2", "c3"):
        assert (await token_client.get(f"/_test/items/{item_id}")).status_code == 200
    await token_client.get("/health")
    await token_client.get("/no/such/path/123")
    response = await token_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'agentkeep_http_requests_total{method="GET",route="/_test/items/{item_id}",status="200"} 3.0' in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert "a1" not in text
    assert "agentkeep_http_request_duration_seconds_bucket" in text
    assert 'agentkeep_db_pool_connections{state="checked_out"}' in text


# Ids name each case: the token is random per process, and test ids must be the same in every
# process (parallel workers collect separately) and must not print a credential.
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"],
    ids=["missing", "wrong-token", "basic-scheme", "token-with-suffix"],
)
async def test_metrics_refuse_a_missing_or_wrong_token(
    token_client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = await token_client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert "agentkeep_http_requests_total" not in response.text


async def test_without_a_token_metrics_answer_loopback_only(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(database_url=sqlite_url)
    async for http in _client(settings, "127.0.0.1"):
        assert (await http.get("/metrics")).status_code == 200
    async for http in _client(settings, "198.51.100.9"):
        assert (await http.get("/metrics")).status_code == 403


def test_short_metrics_token_is_refused(make_settings: Callable[..., Settings]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="24 characters"):
        make_settings(metrics_token="short")


@pytest.mark.slow
def test_metrics_add_up_across_several_worker_processes() -> None:
    from tests.support.server import running_server

    requests = 40
    with running_server(workers=2) as server, httpx.Client(base_url=server.base_url) as http:
        for _ in range(requests):
            # A fresh connection each time lets the kernel spread requests over both workers.
            assert httpx.get(f"{server.base_url}/health").status_code == 200
        totals = []
        for _ in range(6):  # scrapes land on either worker; each must see the sum
            text = http.get("/metrics").text
            line = next(
                row
                for row in text.splitlines()
                if row.startswith("agentkeep_http_requests_total{") and 'route="/health"' in row
            )
            totals.append(float(line.rsplit(" ", 1)[1]))
        assert set(totals) == {float(requests)}, totals


def _pool_size_total(text: str) -> float:
    line = next(
        row for row in text.splitlines() if row.startswith('agentkeep_db_pool_connections{state="size"}')
    )
    return float(line.rsplit(" ", 1)[1])


def _live_gauge_pids(directory: Path) -> set[int]:
    # prometheus_client's naming of a live-mode gauge file (see tests/test_library_internals.py).
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_live*_*.db")}


def _scrape_until(base_url: str, directory: Path, done: Callable[[set[int]], bool], seconds: float) -> None:
    """Scrape over fresh connections (spread over the workers) until `done(pids)`."""
    deadline = time.monotonic() + seconds
    while True:
        assert httpx.get(f"{base_url}/metrics", timeout=10).status_code == 200
        if done(_live_gauge_pids(directory)):
            return
        assert time.monotonic() < deadline, f"live gauges of {_live_gauge_pids(directory)} after {seconds} s"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_worker_s_live_gauges_stop_counting(tmp_path: Path) -> None:
    from tests.support.server import running_server

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with running_server({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, workers=2) as server:
        # Both workers have answered a scrape: the pool gauge sums two pools.
        _scrape_until(server.base_url, metrics_dir, lambda pids: len(pids) == 2, 60)
        text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        two_pools = _pool_size_total(text)
        assert two_pools > 0
        victim, survivor = sorted(_live_gauge_pids(metrics_dir))

        os.kill(victim, signal.SIGKILL)
        # The supervisor replaces the worker; its replacement answers scrapes too. The dead
        # worker's files must be gone, so the gauge sums exactly the two live pools again.
        _scrape_until(server.base_url, metrics_dir, lambda pids: victim not in pids and len(pids) == 2, 90)
        assert survivor in _live_gauge_pids(metrics_dir)
        text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        assert _pool_size_total(text) == two_pools
