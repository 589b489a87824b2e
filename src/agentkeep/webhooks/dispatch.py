"""Who sends deliveries, and the sweep that finds the ones nobody is sending.

- PostgreSQL with `agentkeep worker`: each attempt is a procrastinate job (`jobs`), executed
  by the workers (`register_delivery_task`). The workers' sweep (`DeliverySweep`, mode
  "queue") re-sends a due delivery that has no waiting job and no live attempt: the job of a
  worker killed mid-attempt, whose hold on the delivery has lapsed.
- In-process (SQLite, or RUN_EXECUTION=inprocess): `serve` itself sends; its sweep (mode
  "inprocess") polls for due deliveries every WEBHOOK_SWEEP_SECONDS and attempts them, a few
  at a time, in the background. A process that dies mid-attempt leaves a lapsing hold, and
  the next sweep, in any process, sends the delivery again.

Attempts never run in a request or in a run's transaction: a slow receiver delays only its
own deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.observability.metrics import Metrics
from agentkeep.security.secretbox import secretbox_from_settings
from agentkeep.webhooks import jobs
from agentkeep.webhooks.models import WebhookDelivery
from agentkeep.webhooks.sender import WebhookSender

if TYPE_CHECKING:
    from procrastinate import App

logger = structlog.get_logger("agentkeep.webhooks")

SWEEP_BATCH = 100
# In-process attempts at once: receivers are slow at worst for the request timeout.
INPROCESS_CONCURRENCY = 8
# A due delivery's job may wait this long in a busy queue before the sweep looks at it.
QUEUE_GRACE_SECONDS = 2.0
# How often a worker's sweep looks for stalled delivery jobs, and procrastinate's silence after
# which a worker's `doing` jobs are stalled (as for runs: worker/jobqueue.py).
STALLED_CHECK_SECONDS = 10.0
STALLED_AFTER_SECONDS = 30.0


def register_delivery_task(app: App, sender: WebhookSender) -> None:
    async def deliver_webhook(delivery_id: str) -> None:
        await sender.attempt(uuid.UUID(delivery_id))

    app.task(name=jobs.TASK_NAME, queue=jobs.QUEUE_NAME, pass_context=False)(deliver_webhook)


class DeliverySweep:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        sender: WebhookSender,
        mode: Literal["inprocess", "queue"],
        interval: float,
        job_app: App | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.sender = sender
        self.mode = mode
        self.interval = interval
        self.job_app = job_app
        self._last_tended = 0.0
        self._sending: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(INPROCESS_CONCURRENCY)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:  # an outage: the next sweep tries again
                logger.warning("webhook_sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval)

    async def sweep_once(self) -> int:
        now = datetime.now(UTC)
        due_before = now if self.mode == "inprocess" else now - timedelta(seconds=QUEUE_GRACE_SECONDS)
        async with self.sessionmaker() as session:
            due = list(
                (
                    await session.scalars(
                        select(WebhookDelivery.id)
                        .where(
                            WebhookDelivery.status == "pending",
                            WebhookDelivery.next_attempt_at <= due_before,
                            (WebhookDelivery.locked_until.is_(None)) | (WebhookDelivery.locked_until < now),
                        )
                        .order_by(WebhookDelivery.next_attempt_at)
                        .limit(SWEEP_BATCH)
                    )
                ).all()
            )
        if self.mode == "inprocess":
            for delivery_id in due:
                if delivery_id not in self._sending:
                    self._sending[delivery_id] = asyncio.create_task(self._send(delivery_id))
            return len(due)
        async with self.sessionmaker() as session, session.begin():
            await jobs.defer_in(session, due)  # skips deliveries whose job is waiting
        await self._drop_stalled_jobs()
        return len(due)

    async def _drop_stalled_jobs(self) -> None:
        """Delete the `doing` jobs of dead workers (procrastinate says which): their deliveries
        are sent again by the sweep once the attempt's hold lapses, under a job of their own."""
        loop = asyncio.get_running_loop()
        if self.job_app is None or loop.time() - self._last_tended < STALLED_CHECK_SECONDS:
            return
        self._last_tended = loop.time()
        from procrastinate.jobs import Status  # only workers (PostgreSQL) get here

        manager = self.job_app.job_manager
        stalled = await manager.get_stalled_jobs(
            queue=jobs.QUEUE_NAME, task_name=jobs.TASK_NAME, seconds_since_heartbeat=STALLED_AFTER_SECONDS
        )
        for job in stalled:
            with contextlib.suppress(Exception):  # finished or deleted meanwhile by another sweep
                await manager.finish_job(job, status=Status.FAILED, delete_job=True)

    async def _send(self, delivery_id: uuid.UUID) -> None:
        try:
            async with self._slots:
                await self.sender.attempt(delivery_id)
        except Exception as exc:
            logger.warning("webhook_attempt_failed", delivery_id=str(delivery_id), error=type(exc).__name__)
        finally:
            self._sending.pop(delivery_id, None)

    async def stop(self) -> None:
        tasks = list(self._sending.values())
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)


class BackgroundDelivery:
    """The sender and its sweep as a background task of `serve` (in-process) or a worker (queue)."""

    def __init__(self, sender: WebhookSender, sweep: DeliverySweep) -> None:
        self.sender = sender
        self.sweep = sweep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.sweep.run_forever(), name="webhook-delivery-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.sweep.stop()
        await self.sender.close()


def background_delivery(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    mode: Literal["inprocess", "queue"],
    metrics: Metrics | None = None,
    job_app: App | None = None,
) -> BackgroundDelivery:
    sender = WebhookSender(sessionmaker, settings, secretbox_from_settings(settings), metrics)
    sweep = DeliverySweep(sessionmaker, sender, mode, settings.webhook_sweep_seconds, job_app)
    return BackgroundDelivery(sender, sweep)
