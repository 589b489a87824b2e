"""The recovery sweep: no run stays `running` without a live worker, none stays queued unsent.

Every few seconds, in `serve` (in-process execution) and in every `agentkeep worker`:
- a running run whose lease expired (its worker died or hung) goes back to the queue and is
  dispatched again, or fails with internal_error once it has used RUN_MAX_ATTEMPTS;
- the holder of runs (the in-process runner, or the procrastinate queue) tends to its own
  state: the runner vouches for the runs it holds in memory, the queue settles the jobs of
  workers that stopped sending heartbeats (`jobrows`);
- a queued run that nothing holds any more (its dispatch failed, the process that held it
  in memory died, its job is gone) and that was not dispatched or vouched for in the last
  REDISPATCH_AFTER seconds is dispatched again. A run that merely waits in a long queue is
  held (by its job, or by the runner's memory) and is never sent twice.

Each change is a conditional UPDATE, so any number of sweepers can run at once: one wins
each run, the others find nothing to do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.approvals.ending import expire_due
from agentkeep.config import Settings
from agentkeep.db.faults import classify
from agentkeep.observability.metrics import Metrics
from agentkeep.runs.repository import next_turn, next_turn_after
from agentkeep.worker import leases, redispatch
from agentkeep.worker.reporting import audit_finished, count_finished

logger = structlog.get_logger("agentkeep.worker")

REDISPATCH_AFTER_SECONDS = 30.0
BATCH = 100


class RunHolder(Protocol):
    """What executes runs, as the sweep sees it: `InProcessRunQueue` or `JobRunQueue`."""

    async def hand_over(self, run_id: uuid.UUID) -> bool:
        """Give a queued run to be executed; False when that failed (the sweep tries again)."""
        ...

    async def hand_over_all(self, run_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Give many queued runs at once; those given (the rest the sweep tries again)."""
        ...

    async def tend(self, *, now: datetime, stale_before: datetime) -> list[uuid.UUID]:
        """The holder's own upkeep before lost runs are looked for; the runs it sent again."""
        ...

    async def lost(self, candidates: Select[uuid.UUID]) -> list[uuid.UUID]:
        """Those of the candidate runs it no longer holds (one query at most)."""
        ...


def sweep_interval(lease_seconds: float) -> float:
    """Often enough that an expired lease is noticed within half a lease, at most every 5 s."""
    return max(0.5, min(5.0, lease_seconds / 2))


@dataclass
class SweepReport:
    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    redispatched: list[uuid.UUID] = field(default_factory=list)
    # Runs the holder sent again by its own means (procrastinate retried their stalled job).
    retried: list[uuid.UUID] = field(default_factory=list)
    # Paused runs nobody decided in time, ended `expired`.
    expired: list[uuid.UUID] = field(default_factory=list)


class RecoverySweep:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        holder: RunHolder,
        *,
        metrics: Metrics | None = None,
        redispatch_after: float = REDISPATCH_AFTER_SECONDS,
        interval: float | None = None,
        executing: Collection[uuid.UUID] = frozenset(),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.max_attempts = settings.run_max_attempts
        self.holder = holder
        self.metrics = metrics
        self.redispatch_after = redispatch_after
        self.interval = interval if interval is not None else sweep_interval(settings.run_lease_seconds)
        # Runs this very process is executing (its driver's `active` set): alive by definition.
        self.executing = executing

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                # An outage is waited out quietly; anything else is a bug worth a traceback.
                if (fault := classify(exc)) is not None:
                    logger.warning("recovery_sweep_failed", fault=fault.kind)
                else:
                    logger.exception("recovery_sweep_crashed")
            await asyncio.sleep(self.interval)

    async def run_once(self) -> SweepReport:
        report = SweepReport()
        await self._expired(report)
        await self._approvals_expired(report)
        await self._undispatched(report)
        if report.requeued or report.failed or report.redispatched or report.retried or report.expired:
            logger.info(
                "recovery_sweep",
                requeued=len(report.requeued),
                failed=len(report.failed),
                redispatched=len(report.redispatched),
                retried=len(report.retried),
                approvals_expired=len(report.expired),
            )
        return report

    async def _approvals_expired(self, report: SweepReport) -> None:
        """Paused runs past their approval deadline end `expired`; a thread's next turn may start."""
        ended = await expire_due(self.sessionmaker, now=datetime.now(UTC))
        report.expired.extend(run.run_id for run in ended)
        for run in ended:
            if run.thread_id is None:
                continue
            async with self.sessionmaker() as session:
                successor = await next_turn(session, run.thread_id)
            if successor is not None:
                await self.holder.hand_over(successor)
        if self.metrics is not None and ended:
            async with self.sessionmaker() as session:
                for run in ended:
                    await count_finished(session, run.run_id, self.metrics)

    async def _expired(self, report: SweepReport) -> None:
        """Every run whose lease expired back in the queue (or failed), then handed over.

        Batches are settled until one comes back short or settles nothing, and only then
        are the runs handed over: a worker that died with hundreds of runs has them all back
        in the queue within one pass, before the runs handed over load this process. (A
        batch per pass left the rest to later passes, each slower than the last while this
        process worked on the runs it had just handed over.)
        """
        while True:
            found, settled = await self._settle_expired(report)
            if found < BATCH or settled == 0:
                break
        await self.holder.hand_over_all(report.requeued)
        for run_id in report.failed:
            # A failed turn lets the next turn of its thread start.
            async with self.sessionmaker() as session:
                successor = await next_turn_after(session, run_id)
            if successor is not None:
                await self.holder.hand_over(successor)
        if self.metrics is not None and report.failed:
            async with self.sessionmaker() as session:
                for run_id in report.failed:
                    await count_finished(session, run_id, self.metrics)

    async def _settle_expired(self, report: SweepReport) -> tuple[int, int]:
        """Requeue (or fail) one batch of expired runs: how many were found, how many settled."""
        now = datetime.now(UTC)
        async with self.sessionmaker() as session:
            expired = await leases.expired_runs(session, now=now, limit=BATCH)
        settled = 0
        for run_id in expired:
            if run_id in self.executing:
                continue
            async with self.sessionmaker() as session, session.begin():
                if await leases.requeue_expired(session, run_id, now=now, max_attempts=self.max_attempts):
                    report.requeued.append(run_id)
                    settled += 1
                elif await leases.exhaust(session, run_id, now=now, max_attempts=self.max_attempts):
                    await audit_finished(session, run_id)
                    report.failed.append(run_id)
                    settled += 1
        return len(expired), settled

    async def _undispatched(self, report: SweepReport) -> None:
        now = datetime.now(UTC)
        stale_before = now - timedelta(seconds=self.redispatch_after)
        report.retried.extend(await self.holder.tend(now=now, stale_before=stale_before))
        lost = await self.holder.lost(redispatch.candidates(stale_before=stale_before, limit=BATCH))
        if not lost:
            return
        async with self.sessionmaker() as session, session.begin():
            won = await redispatch.claim(session, lost, now=now, stale_before=stale_before)
        report.redispatched.extend(await self.holder.hand_over_all(won))
