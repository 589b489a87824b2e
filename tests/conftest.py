"""Shared fixtures: every database test runs on SQLite and on PostgreSQL (+ Redis)."""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.security import passwords
from tests.support.databases import (
    REDIS_URL,
    create_postgres_database,
    drop_postgres_database,
    finish_drops,
    migrate,
    postgres_answers,
    truncate_all,
    unavailable,
)
from tests.support.secret_scan import current_scan, scan_database
from tests.support.throwaway import ThrowawayRedis, running_redis

# The local-server fixtures of the tool tests, shared with the agent-loop tests; the secret scan.
pytest_plugins = ["tests.tools.fixtures", "tests.support.scan_plugin", "pytester"]

BACKENDS = ["sqlite", "postgres"]


def pytest_configure(config: pytest.Config) -> None:
    # The operator's shell must not leak settings into tests: each test states its own.
    for name in Settings.model_fields:
        os.environ.pop(name.upper(), None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    finish_drops()  # databases dropped behind the tests (tests/support/databases.py)


@pytest.fixture(autouse=True, scope="session")
def _hash_passwords_at_normal_priority() -> Iterator[None]:
    """In-process apps hash at normal thread priority in tests.

    A deployment lowers its hashing threads' priority so its own event loop comes first. In a
    test run the other processes on the host are parallel test workers, their servers and
    databases: below them, a worker's hashes would wait for everyone else's CPU work, so a
    test that logs in a few users would take many times longer. tests/auth/test_passwords.py,
    which is about that priority, restores it.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "lower_thread_priority", lambda: None)
        yield


# argon2id as in production but with the smallest cost argon2 is used with (1 MiB, 1 pass).
TEST_ARGON2 = {"memory_cost": 1024, "time_cost": 1}


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    """In-process apps hash passwords with argon2id at a test cost.

    Nearly every test registers and logs in users, and the production cost (19 MiB, 3 passes,
    about 60 ms of CPU a hash) made hashing a fifth of the suite's CPU on two cores. The same
    code runs (pwdlib's argon2id, in the hashing threads, behind the semaphore); only the
    parameters are smaller, as Django's documentation advises for test suites. The tests about
    the parameters themselves ask for `production_password_hashing`; `agentkeep serve`
    processes started by the tests always hash at the production cost.
    """
    cheap = functools.partial(passwords.build_password_hash, **TEST_ARGON2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "build_password_hash", cheap)
        yield


@pytest.fixture
def production_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's in-process apps hash at the production cost (the module's own builder)."""
    monkeypatch.setattr(passwords, "build_password_hash", _PRODUCTION_BUILD_PASSWORD_HASH)


_PRODUCTION_BUILD_PASSWORD_HASH = passwords.build_password_hash


async def redis_answers(url: str = REDIS_URL) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    secret = secrets.token_urlsafe(48)
    scan = current_scan()
    if scan is not None:
        scan.remember(secret, "JWT_SECRET of the in-process apps")
    return secret


@pytest.fixture(scope="session")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "agentkeep.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url)
    return url


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str | None]:
    if not await postgres_answers():
        yield None
        return
    url = await create_postgres_database()
    await migrate(url)
    yield url
    await drop_postgres_database(url)


@pytest.fixture(scope="session")
async def redis_available() -> bool:
    return await redis_answers()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    request: pytest.FixtureRequest,
    backend: str,
    sqlite_url: str,
    postgres_url: str | None,
    redis_available: bool,
) -> AsyncIterator[str]:
    if backend == "postgres":
        if postgres_url is None:
            unavailable("PostgreSQL")
        if not redis_available:
            unavailable("Redis")
        assert postgres_url is not None
        url = postgres_url
    else:
        url = sqlite_url
    yield url
    scan_database(url, f"after {request.node.nodeid}")
    await truncate_all(url)


@pytest.fixture
def make_settings(jwt_secret: str) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "jwt_secret": jwt_secret,
            # Each test gets its own Redis namespace: runs and tests never share keys.
            "redis_key_prefix": f"agentkeep-test-{secrets.token_hex(6)}",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(database_url=database_url, redis_url=redis_url)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A redis-server of the test's own, which it may stop or freeze (SIGSTOP)."""
    with running_redis() as server:
        yield server
