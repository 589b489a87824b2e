"""One limit, shared by every instance on the same Redis: in-process and across processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from agentkeep.config import Settings
from tests.ratelimit.conftest import limited_app
from tests.support.databases import REDIS_URL, unavailable
from tests.support.processes import run_agentkeep
from tests.support.throwaway import free_port

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]
AGENTKEEP = Path(sys.executable).with_name("agentkeep")


@pytest.fixture
def redis_settings(
    make_settings: Callable[..., Settings], sqlite_url: str, redis_available: bool
) -> Callable[..., Settings]:
    if not redis_available:
        unavailable("Redis")

    def build(**overrides: object) -> Settings:
        return make_settings(database_url=sqlite_url, redis_url=REDIS_URL, **overrides)

    return build


async def test_two_app_instances_on_one_redis_share_the_limit(
    redis_settings: Callable[..., Settings],
) -> None:
    # The default Redis timeouts: a burst that waits past 0.1 s on a busy host is no outage.
    settings = redis_settings(rate_limit_auth="10/minute")
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(limited_app(settings))
        two = await stack.enter_async_context(limited_app(settings))
        responses = await asyncio.gather(
            *(instance.http.post("/_test/login") for instance in (one, two) for _ in range(15))
        )
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 20


# --- two real server processes on loopback ---------------------------------------------


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    database = tmp_path / "agentkeep.db"
    # Nothing from the operator's shell: the servers get exactly these settings.
    env = {key: value for key, value in os.environ.items() if key.lower() not in Settings.model_fields}
    env.update(
        {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": f"agentkeep-test-{secrets.token_hex(6)}",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
            **extra,
        }
    )
    migrated = run_agentkeep("migrate", env=env, cwd=tmp_path, timeout=60)
    assert migrated.returncode == 0, migrated.stderr
    return env


@contextmanager
def _servers(command: Callable[[int], list[str]], env: dict[str, str], cwd: Path) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    logs = [cwd / f"server-{port}.log" for port in ports]
    processes = []
    for port, log in zip(ports, logs, strict=True):
        with log.open("wb") as output:
            processes.append(
                subprocess.Popen(command(port), env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
            )
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        deadline = time.monotonic() + 90  # a loaded host can take long to import and start
        for url, process, log in zip(urls, processes, logs, strict=True):
            while True:
                if process.poll() is not None:
                    pytest.fail(f"server exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("server did not start within 90 s")
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _alternate(urls: list[str], path: str, count: int, **kwargs: object) -> list[int]:
    statuses = []
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(count):
            response = await http.post(f"{urls[n % 2]}{path}", **kwargs)  # type: ignore[arg-type]
            statuses.append(response.status_code)
    return statuses


@pytest.mark.slow
async def test_two_server_processes_on_one_redis_share_the_limit(
    tmp_path: Path, redis_available: bool
) -> None:
    if not redis_available:
        unavailable("Redis")
    env = _environment(tmp_path, RATE_LIMIT_AUTH="6/minute")

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "tests.ratelimit.serve_test_app", str(port)]

    with _servers(command, env, tmp_path) as urls:
        statuses = await _alternate(urls, "/_test/login", 12)
    assert statuses == [200] * 6 + [429] * 6


@pytest.mark.slow
async def test_two_agentkeep_serve_processes_share_the_login_limit(
    tmp_path: Path, redis_available: bool
) -> None:
    if not redis_available:
        unavailable("Redis")
    env = _environment(tmp_path, RATE_LIMIT_AUTH="6/minute")

    def command(port: int) -> list[str]:
        return [str(AGENTKEEP), "serve", "--host", "127.0.0.1", "--port", str(port)]

    with _servers(command, env, tmp_path) as urls:
        statuses = await _alternate(urls, "/auth/login", 12, data={"username": "test", "password": "test"})
    # The fixes report's check, spread over two processes: 401 until the shared limit, then 429.
    assert statuses == [401] * 6 + [429] * 6
