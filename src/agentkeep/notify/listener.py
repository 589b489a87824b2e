"""The PostgreSQL listener: one dedicated connection per process, LISTENing on the channel
`announce` notifies, delivering each notification to the process's hub.

The connection is opened with psycopg directly (autocommit), outside the engine's pool (a LISTEN holds
its connection for the process's life). While it is down the hub is not `reliable`, so
waiters fall back to the safety poll; it reconnects with a growing delay (up to 5 s), and
on every (re)connect every waiter is woken to re-read what it may have missed. A ping every
`PING_SECONDS` finds a connection that died silently.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkeep.config import Settings
from agentkeep.db.engine import libpq_url
from agentkeep.notify.announce import CHANNEL, hub_of_engine
from agentkeep.notify.hub import Hub

logger = structlog.get_logger("agentkeep.notify")

PING_SECONDS = 15.0
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
APPLICATION_NAME = "agentkeep-listener"


class PostgresListener:
    def __init__(self, dsn: str, hub: Hub, *, connect_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.hub = hub
        self.connect_timeout = connect_timeout
        self._task: asyncio.Task[None] | None = None
        self.connections = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notify-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.hub.listening = False

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except (OSError, psycopg.Error, TimeoutError) as exc:
                if self.hub.listening or failures == 0:
                    logger.warning("notify_listener_lost", error=type(exc).__name__)
                failures += 1
            self.hub.set_listening(False)
            await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(1, int(self.connect_timeout)),
            application_name=APPLICATION_NAME,
        )
        try:
            await connection.execute(f"LISTEN {CHANNEL}")
            self.connections += 1
            self.hub.set_listening(True)
            if self.connections > 1:
                logger.info("notify_listener_reconnected")
            while True:
                async for notify in connection.notifies(timeout=PING_SECONDS):
                    self.hub.deliver(notify.payload)
                await asyncio.wait_for(connection.execute("SELECT 1"), self.connect_timeout)
        finally:
            self.hub.set_listening(False)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 1.0)


def listen_for(engine: AsyncEngine, settings: Settings) -> PostgresListener | None:
    """Start the listener of `engine`'s hub on PostgreSQL (None on SQLite: nothing to listen to)."""
    hub = hub_of_engine(engine)
    if not hub.cross_process:
        return None
    listener = PostgresListener(
        libpq_url(settings.database_url), hub, connect_timeout=settings.db_connect_timeout
    )
    listener.start()
    return listener
