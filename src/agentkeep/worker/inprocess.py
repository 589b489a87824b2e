"""The embedded runner: runs execute inside `serve`, RUN_CONCURRENCY at a time.

`dispatch` puts the run id on an in-memory queue that RUN_CONCURRENCY consumer tasks read.
The queue is only a hint: the runs table decides (a consumer claims the run before it
executes it), and the recovery sweep dispatches again whatever this memory loses when the
process dies. With `serve --workers N` every process has its own runner; a run dispatched
to several of them is still executed once.

Shutdown: stop taking runs, give the running ones up to the shutdown timeout to finish,
then cancel them; the driver hands each back to the queue (status queued, attempt not
counted). Runs still waiting in memory are marked undispatched so the next sweep, in any
process, sends them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.worker import leases
from agentkeep.worker.driver import DB_ERRORS, RunDriver

logger = structlog.get_logger("agentkeep.worker")


class InProcessRunQueue:
    def __init__(
        self, driver: RunDriver, sessionmaker: async_sessionmaker[AsyncSession], concurrency: int
    ) -> None:
        self.driver = driver
        self.sessionmaker = sessionmaker
        self.concurrency = concurrency
        self._queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self._waiting: set[uuid.UUID] = set()
        self._consumers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running(self) -> int:
        return len(self._busy)

    async def start(self) -> None:
        self._consumers = [
            asyncio.create_task(self._consume(), name=f"run-consumer-{index}")
            for index in range(self.concurrency)
        ]

    async def hand_over(self, run_id: uuid.UUID) -> bool:
        """Queue the run in memory; False once the runner is stopping."""
        if self._stopping:
            return False
        if run_id not in self._waiting:
            self._waiting.add(run_id)
            self._queue.put_nowait(run_id)
        return True

    async def dispatch(self, run_id: uuid.UUID) -> None:
        """Hand a committed queued run to the runner (never raises; the sweep covers failures)."""
        if not await self.hand_over(run_id):
            return
        try:
            async with self.sessionmaker() as session, session.begin():
                await leases.mark_dispatched(session, run_id, now=datetime.now(UTC))
        except DB_ERRORS as exc:
            logger.warning("run_dispatch_mark_failed", run_id=str(run_id), error=type(exc).__name__)

    async def _consume(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._stopping:
            run_id = await self._queue.get()
            self._waiting.discard(run_id)
            if self.stopping:
                self._waiting.add(run_id)  # left for the shutdown to mark undispatched
                return
            self._busy.add(task)
            try:
                await self.driver.drive(run_id)
            except Exception:
                logger.exception("run_driver_failed", run_id=str(run_id))
            finally:
                self._busy.discard(task)

    async def stop(self, grace_seconds: float) -> None:
        """Finish or hand back the running runs within `grace_seconds`."""
        self._stopping = True
        for consumer in self._consumers:
            if consumer not in self._busy:
                consumer.cancel()
        busy = list(self._busy)
        if busy:
            logger.info("runner_stopping", running=len(busy), grace_seconds=grace_seconds)
            _done, pending = await asyncio.wait(busy, timeout=grace_seconds)
            for consumer in pending:
                consumer.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        await self._forget_waiting()

    async def _forget_waiting(self) -> None:
        while not self._queue.empty():
            self._waiting.add(self._queue.get_nowait())
        if not self._waiting:
            return
        with contextlib.suppress(*DB_ERRORS):
            async with self.sessionmaker() as session, session.begin():
                await leases.mark_undispatched(session, sorted(self._waiting))
        self._waiting.clear()
