"""The embedded runner: runs execute inside `serve`, RUN_CONCURRENCY at a time.

`dispatch` puts the run id on an in-memory queue that RUN_CONCURRENCY consumer tasks read
(`accept` does so for a new run once its transaction has committed: a consumer must find
the row). The queue is only a hint: the runs table decides (a consumer claims the run before it
executes it), and the recovery sweep dispatches again whatever this memory loses when the
process dies. The runner knows what it holds (waiting in memory, or taken by a consumer):
the sweep never sends those again, and before each sweep the runner vouches for them in the
runs table (`dispatched_at`), so the sweeps of other processes (`serve --workers N`) leave
them alone too, however long they wait. A run dispatched to several processes anyway is
still executed once.

Shutdown: stop taking runs, give the running ones up to the shutdown timeout to finish,
then cancel them; the driver hands each back to the queue (status queued, attempt not
counted). Runs still waiting in memory are marked undispatched so the next sweep, in any
process, sends them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.db.session import after_commit
from agentkeep.worker import leases, redispatch
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
        # Runs consumers have taken from the queue and are driving (a run may be taken twice).
        self._taken: Counter[uuid.UUID] = Counter()
        self._consumers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running(self) -> int:
        return len(self._busy)

    def holds(self, run_id: uuid.UUID) -> bool:
        """The run waits in this runner's memory or one of its consumers is driving it."""
        return run_id in self._waiting or run_id in self._taken

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

    async def hand_over_all(self, run_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        return [run_id for run_id in run_ids if await self.hand_over(run_id)]

    async def accept(self, session: AsyncSession, run_id: uuid.UUID) -> bool:
        """Dispatch the run once `session`'s transaction has committed (never if it rolls back)."""

        async def dispatch() -> None:
            await self.dispatch(run_id)

        after_commit(session, dispatch)
        return False

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
            self._taken[run_id] += 1
            try:
                await self.driver.drive(run_id)
            except Exception:
                logger.exception("run_driver_failed", run_id=str(run_id))
            finally:
                self._busy.discard(task)
                self._taken[run_id] -= 1
                if self._taken[run_id] <= 0:
                    del self._taken[run_id]

    async def tend(self, *, now: datetime, stale_before: datetime) -> list[uuid.UUID]:
        """Vouch for the runs held here (one UPDATE per 500, only for marks half-way to stale)."""
        held = self._waiting | set(self._taken)
        if held:
            async with self.sessionmaker() as session, session.begin():
                await redispatch.vouch(session, held, now=now, refresh_before=now - (now - stale_before) / 2)
        return []

    async def lost(self, candidates: Select[uuid.UUID]) -> list[uuid.UUID]:
        """The candidates this runner does not hold (its own memory decides, no query added)."""
        async with self.sessionmaker() as session:
            found = (await session.scalars(candidates)).all()
        return [run_id for run_id in found if not self.holds(run_id)]

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
