"""Webhook tests: a real receiver process on loopback that verifies every request with the
`standardwebhooks` library; an app with an encryption key, WEBHOOK_ALLOWED_NETWORKS admitting
127.0.0.1 only, and a retry schedule of fractions of a second. On PostgreSQL an `agentkeep
worker` runs beside the app (deliveries are procrastinate jobs); on SQLite `serve` sends them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agentkeep.config import Settings
from agentkeep.observability.metrics import Metrics
from agentkeep.security.secretbox import generate_key
from agentkeep.worker.command import run_worker
from tests.support.databases import REDIS_URL
from tests.support.processes import clean_environment, process_log
from tests.support.throwaway import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
ALLOWED = "127.0.0.1"
FAST_RETRIES = "0.3,0.3"


@dataclass
class Receiver:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def control(self, **settings: Any) -> None:
        httpx.post(self.url("/control"), json=settings, timeout=5).raise_for_status()

    def received(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(self.url("/received"), timeout=5).json()
        return found


def start_receiver() -> Receiver:
    port = free_port()
    with process_log("webhook-receiver").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.webhooks.receiver", "--port", str(port)],
            cwd=REPOSITORY,
            env=clean_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    receiver = Receiver(port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the receiver exited with {process.returncode}")
        try:
            receiver.received()
            return receiver
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the receiver did not start")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = start_receiver()
    yield started
    stop_process(started.process)


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return generate_key()


@pytest.fixture
def webhook_settings() -> dict[str, Any]:
    """Overrides a test may change before the app starts."""
    return {}


@pytest.fixture
def settings(
    backend: str,
    database_url: str,
    make_settings: Callable[..., Settings],
    encryption_key: str,
    webhook_settings: dict[str, Any],
) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "rate_limit_auth": "1000/minute",
        "secrets_encryption_keys": encryption_key,
        "webhook_allowed_networks": ALLOWED,
        "webhook_retry_schedule": FAST_RETRIES,
        "webhook_sweep_seconds": 0.2,
        "webhook_timeout_seconds": 3,
    }
    values.update(webhook_settings)
    return make_settings(**values)


@dataclass
class Sender:
    """Whatever sends the test app's deliveries: the app itself (SQLite), or a worker."""

    app: FastAPI
    metrics_port: int | None

    def metrics(self) -> str:
        if self.metrics_port is None:
            metrics: Metrics = self.app.state.metrics
            return metrics.render()[0].decode()
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text


@pytest.fixture
async def worker(
    backend: str, settings: Settings, app: FastAPI, client: httpx.AsyncClient
) -> AsyncIterator[Sender]:
    """On PostgreSQL, an `agentkeep worker` (runs and deliveries) for the test's app."""
    if backend != "postgres":
        yield Sender(app, None)
        return
    stop = asyncio.Event()
    port = free_port()
    task = asyncio.create_task(run_worker(settings, stop=stop, metrics_port=port))
    yield Sender(app, port)
    stop.set()
    await asyncio.wait_for(task, timeout=60)
