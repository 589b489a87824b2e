"""One heartbeat for all of a runner's runs: every lease/3 seconds, one UPDATE renews the
lease of every run this runner executes and reports which of them a user asked to cancel.

A run missing from the answer was taken over (its lease expired and another runner claimed
it, or its thread was deleted): its attempt stops without writing anything more. While the
database does not answer, attempts keep running until the lease they last renewed would
have expired, then stop the same way. Cancel requests normally reach an attempt at once by
notification (`agentkeep.notify`); the renewal's report is the safety net for a missed one.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.worker import leases

logger = structlog.get_logger("agentkeep.worker")


class Stop(enum.Enum):
    CANCEL_REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    # The attempt's events could not be written (the database, or a bug): abandon it.
    WRITE_FAILED = "write_failed"


class Kept(Protocol):
    """An attempt whose lease the keeper renews."""

    lease_valid_until: float

    def halt(self, reason: Stop) -> None: ...


class LeaseKeeper:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], owner: str, lease_seconds: float
    ) -> None:
        self.sessionmaker = sessionmaker
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / 3
        self._kept: dict[uuid.UUID, Kept] = {}
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0

    def keep(self, run_id: uuid.UUID, attempt: Kept) -> None:
        self._kept[run_id] = attempt
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="lease-keeper")

    def release(self, run_id: uuid.UUID) -> None:
        self._kept.pop(run_id, None)

    async def _run(self) -> None:
        """Renew until no attempt is left (the next `keep` starts it again)."""
        while self._kept:
            await asyncio.sleep(self.interval)
            await self.renew()

    async def renew(self) -> None:
        loop = asyncio.get_running_loop()
        kept = dict(self._kept)
        if not kept:
            return
        started = loop.time()
        try:
            async with self.sessionmaker() as session, session.begin():
                held = await leases.renew_all(
                    session, list(kept), self.owner, now=datetime.now(UTC), lease_seconds=self.lease_seconds
                )
        except Exception as exc:  # never die silently: a dead keeper loses every lease
            logger.warning("run_heartbeat_failed", error=type(exc).__name__, runs=len(kept))
            for attempt in kept.values():
                if loop.time() >= attempt.lease_valid_until:
                    attempt.halt(Stop.LEASE_LOST)
            return
        self.renewals += 1
        for run_id, attempt in kept.items():
            if run_id not in held:
                attempt.halt(Stop.LEASE_LOST)
                continue
            attempt.lease_valid_until = started + self.lease_seconds
            if held[run_id]:
                attempt.halt(Stop.CANCEL_REQUESTED)
