"""Test databases: a fresh PostgreSQL database per test run, a SQLite file otherwise."""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agentkeep.db.migrate import upgrade
from agentkeep.db.models import Base
from agentkeep.worker.queue_schema import apply_queue_schema
from tests.support.secret_scan import scan_database, watch_database

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def services_required() -> bool:
    """In CI the PostgreSQL + Redis suite must run: a missing service fails instead of skipping."""
    return os.environ.get("AGENTKEEP_TEST_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def unavailable(what: str) -> NoReturn:
    """Skip locally, fail in CI: the PostgreSQL + Redis suite must never be skipped there."""
    message = f"{what} is not available"
    if services_required():
        pytest.fail(f"{message}, and AGENTKEEP_TEST_REQUIRE_SERVICES makes it mandatory")
    pytest.skip(message)


async def postgres_answers(url: str = ADMIN_URL) -> bool:
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 3})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


async def create_postgres_database(prefix: str = "agentkeep_test") -> str:
    """Create an empty database with a unique name on the test server; return its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    engine = create_async_engine(ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    watch_database(url)
    return url


async def drop_postgres_database(url: str) -> None:
    """Search the database a last time, then drop it behind the tests (see `_Dropper`)."""
    scan_database(url, "before it was dropped", last=True)
    _dropper.drop(url)


def finish_drops() -> None:
    """Wait for the databases still being dropped (the end of a test process)."""
    _dropper.finish()


class _Dropper:
    """Drops databases in a thread of its own, one after the other.

    `DROP DATABASE` waits for a checkpoint of the whole server: one to ten seconds on a busy
    host, which a test's teardown would otherwise spend waiting. The name is unique and
    nothing uses the database any more (`WITH (FORCE)` ends any leftover connection), so
    nothing waits for it but the end of the process.
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []

    def drop(self, url: str) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-database")
        self._pending.append(self._executor.submit(self._drop, url))

    @staticmethod
    def _drop(url: str) -> None:
        name = make_url(url).database
        assert name is not None
        admin = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            connection.execute(statement.format(sql.Identifier(name)))

    def finish(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None


_dropper = _Dropper()


# procrastinate's tables emptied with ours (`agentkeep migrate` creates them on PostgreSQL).
QUEUE_TABLES = ("procrastinate_jobs", "procrastinate_events", "procrastinate_periodic_defers")


async def migrate(url: str) -> None:
    """As `agentkeep migrate` does: our schema, and on PostgreSQL the job queue's."""
    await asyncio.to_thread(upgrade, url)
    if make_url(url).get_backend_name() == "postgresql":
        await asyncio.to_thread(apply_queue_schema, url)


async def truncate_all(url: str) -> None:
    """Empty every table so each test starts from a clean schema.

    On PostgreSQL a DELETE of each table, with foreign keys and triggers set aside for the
    transaction (`session_replication_role = replica`, the test user is a superuser): the
    tables of a test are a few rows each, and `TRUNCATE` of some forty tables costs a new
    file per table and per index, twenty to forty times the DELETEs, after every test. No
    table has a sequence whose values a test could depend on (keys are UUIDs, numbers are
    assigned by the product).
    """
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                present = set(
                    await connection.scalars(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
                    )
                )
                queue = [name for name in QUEUE_TABLES if name in present]
                tables = [table.name for table in Base.metadata.sorted_tables] + queue
                # Table names from our own metadata and the queue's schema, not from input.
                deletes = "".join(f'DELETE FROM "{name}";' for name in tables)  # noqa: S608
                script = "SET LOCAL session_replication_role = replica;" + deletes
                driver = (await connection.get_raw_connection()).driver_connection
                assert driver is not None
                await driver.execute(script)  # one round trip, several statements
            else:
                for table in reversed(Base.metadata.sorted_tables):
                    await connection.execute(delete(table))
    finally:
        await engine.dispose()
