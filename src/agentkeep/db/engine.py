"""Engine construction: pooled asyncpg for PostgreSQL, tuned aiosqlite for SQLite."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pydantic_core
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from agentkeep.audit.keys import attach_keyring
from agentkeep.auth import revocations  # noqa: F401  (every process announces access withdrawals)
from agentkeep.config import Settings
from agentkeep.notify.announce import attach_hub

APPLICATION_NAME = "agentkeep"
SQLITE_BUSY_TIMEOUT_MS = 5000
# A pooled connection idle this long is pinged before it is handed out (the server may have
# restarted or failed over meanwhile); one in steady use is not: a ping is three round
# trips, more than most requests make. A connection that dies between uses anyway fails
# that one request with a 503, and the pool then replaces every connection as old as it.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "agentkeep.idle_since"


def _mark_idle(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
    idle_since = record.info.get(_IDLE_SINCE)
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as exc:
        # The pool discards this connection and checks out (or opens) another.
        raise DisconnectionError("a pooled connection failed its ping") from exc


def _postgres_engine(settings: Settings, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        # JSON columns (agent tools and limits, audit details) decode in Rust, not json.loads.
        json_deserializer=pydantic_core.from_json,
        connect_args={
            "timeout": settings.db_connect_timeout,
            "command_timeout": settings.db_command_timeout,
            "server_settings": {"application_name": APPLICATION_NAME},
        },
    )
    event.listen(engine.sync_engine, "checkin", _mark_idle)
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_before_savepoint(connection: Connection, _name: str) -> None:
    # The sqlite3 driver opens a transaction only before INSERT, UPDATE or DELETE. A
    # SAVEPOINT sent first (begin_nested before the request's first write) would itself
    # become the outermost transaction, and its RELEASE would commit the request's work so
    # far, which a later failure could then no longer roll back.
    driver_connection: Any = connection.connection.driver_connection
    if not driver_connection.in_transaction:
        connection.exec_driver_sql("BEGIN")


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the folder of a SQLite file so a fresh checkout needs no manual step."""
    url = make_url(database_url)
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    ensure_sqlite_directory(settings.database_url)
    # No ping: a local file does not disconnect.
    engine = create_async_engine(
        url,
        json_deserializer=pydantic_core.from_json,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
    event.listen(engine.sync_engine, "savepoint", _begin_before_savepoint)
    return engine


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """Build the engine for the configured database. Nothing connects until first use.
    `pool_size`: PostgreSQL connections kept (default DB_POOL_SIZE)."""
    if settings.is_sqlite:
        engine = _sqlite_engine(settings)
    else:
        engine = _postgres_engine(settings, pool_size or settings.db_pool_size)
    # Every process that writes or seals audit records (API, worker, CLI) uses the same keys.
    attach_keyring(engine, settings)
    # Announcements of committed changes reach this process's waiters (agentkeep.notify).
    attach_hub(engine)
    return engine


def libpq_url(database_url: str) -> str:
    """DATABASE_URL as libpq (psycopg) takes it: without the `+asyncpg` driver name."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        raise ValueError("not a PostgreSQL URL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
