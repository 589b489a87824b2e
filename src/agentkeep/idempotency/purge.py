"""Deleting idempotency keys older than `IDEMPOTENCY_TTL`, in the background of `serve`.

An expired key is already treated as new by `IdempotencyStore.claim`; the purge keeps the
table from growing with every create ever retried. Rows go in bounded batches, oldest first
through the `created_at` index, each batch its own short transaction, so a large backlog
never holds locks for long. Several instances may purge at once: a row deleted twice is
simply not there the second time.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.idempotency.models import IdempotencyKey
from agentkeep.idempotency.service import IDEMPOTENCY_TTL

logger = structlog.get_logger("agentkeep.idempotency")

PURGE_BATCH = 1000
PURGE_INTERVAL_SECONDS = 600.0


async def purge_expired_keys(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    batch_size: int = PURGE_BATCH,
) -> int:
    """Delete every key created before `now - IDEMPOTENCY_TTL`; returns how many went."""
    cutoff = (now or datetime.now(UTC)) - IDEMPOTENCY_TTL
    oldest = (
        select(IdempotencyKey.id)
        .where(IdempotencyKey.created_at < cutoff)
        .order_by(IdempotencyKey.created_at)
        .limit(batch_size)
    )
    total = 0
    while True:
        # Read first: an idle pass takes no write lock (SQLite has one for the whole file).
        async with sessionmaker() as session, session.begin():
            ids = list((await session.scalars(oldest)).all())
            if ids:
                await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch_size:
            return total


class IdempotencyPurger:
    """Purges expired keys every `interval` seconds for the life of the application.

    Database errors are logged (type only) and the next pass tries again; they never reach
    a request.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, interval: float = PURGE_INTERVAL_SECONDS
    ) -> None:
        self.sessionmaker = sessionmaker
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="idempotency-purge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                purged = await purge_expired_keys(self.sessionmaker)
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                logger.warning("idempotency_purge_failed", error=type(exc).__name__)
            except Exception:
                logger.exception("idempotency_purge_crashed")
            else:
                if purged:
                    logger.info("idempotency_keys_purged", count=purged)
            await asyncio.sleep(self.interval)
