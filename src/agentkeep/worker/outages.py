"""A worker rides out database outages: procrastinate's worker restarted, outages logged quietly.

procrastinate's worker stops by design when its LISTEN connection, its heartbeat or a job
fetch fails, and it records each job's end from a task nobody awaits. During a PostgreSQL
outage that would end `agentkeep worker` and fill its log with tracebacks that say nothing
but "the database is down". So the worker is started again, with a growing pause, until the
database answers; runs it was executing are handed back or recovered through their leases
(docs/runs-execution.md), so none is lost. And a failure that agentkeep.db.faults classifies
as an outage is logged as one warning line, without a traceback; anything else keeps its
traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import structlog
from procrastinate import App

from agentkeep.config import Settings
from agentkeep.db.faults import classify
from agentkeep.webhooks.jobs import QUEUE_NAME as WEBHOOK_QUEUE_NAME
from agentkeep.worker.jobqueue import QUEUE_NAME
from agentkeep.worker.liveness import HEARTBEAT_SECONDS, STALLED_AFTER_SECONDS

logger = structlog.get_logger("agentkeep.worker")

# LISTEN/NOTIFY wakes the worker at once; polling is the fallback.
FETCH_POLL_SECONDS = 2.0
# Pauses before starting procrastinate's worker again after a database outage stopped it.
RESTART_PAUSES_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0)
# A worker that ran this long before stopping was not failing to start: pause briefly again.
STABLE_AFTER_SECONDS = 60.0


async def work_until_stopped(job_app: App, settings: Settings, owner: str, stop: asyncio.Event) -> None:
    """Run procrastinate's worker until `stop`, starting it again whenever an outage ends it."""
    pauses = iter(RESTART_PAUSES_SECONDS)
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        work = asyncio.create_task(
            job_app.run_worker_async(
                queues=[QUEUE_NAME, WEBHOOK_QUEUE_NAME],
                name=owner,
                concurrency=settings.run_concurrency,
                install_signal_handlers=False,
                shutdown_graceful_timeout=settings.shutdown_timeout_seconds,
                delete_jobs="always",
                fetch_job_polling_interval=FETCH_POLL_SECONDS,
                update_heartbeat_interval=HEARTBEAT_SECONDS,
                stalled_worker_timeout=STALLED_AFTER_SECONDS,
            ),
            name="procrastinate-worker",
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([work, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if stop.is_set():
            logger.info("worker_stopping", worker=owner, timeout=settings.shutdown_timeout_seconds)
            # Cancelling procrastinate's worker stops fetching, waits for running jobs up to
            # the graceful timeout, then cancels them: the driver hands those runs back.
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            return
        error = work.exception()
        fault = classify(error) if error is not None else None
        if error is not None and fault is None:
            raise error  # a bug, not an outage: fail loudly
        if loop.time() - started > STABLE_AFTER_SECONDS:
            pauses = iter(RESTART_PAUSES_SECONDS)
        pause = next(pauses, RESTART_PAUSES_SECONDS[-1])
        logger.warning(
            "job_worker_restarting", worker=owner, fault=fault.kind if fault else None, pause=pause
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)


def _unawaited_task_failed(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A task that failed for want of a database is an outage, not a bug: one warning.

    procrastinate records each job's end in its own task; during an outage that write fails
    and nothing awaits the task. The run itself is tracked in the runs table.
    """
    error = context.get("exception")
    fault = classify(error) if isinstance(error, BaseException) else None
    if fault is None:
        loop.default_exception_handler(context)
        return
    future = context.get("future")
    name = future.get_name() if isinstance(future, asyncio.Task) else None
    logger.warning("background_task_failed", task=name, fault=fault.kind)


class _OutageRecords(logging.Filter):
    """Turn a library's error record about an outage into a warning without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        fault = classify(error) if error is not None else None
        if fault is not None:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"{record.getMessage()} (database outage: {fault.kind})"
            record.args = None
        return True


@contextlib.contextmanager
def quiet_outage_tracebacks() -> Iterator[None]:
    """Within: outage failures of unawaited tasks and library log records become one line."""
    loop = asyncio.get_running_loop()
    # Left installed: tasks that failed during an outage may be collected after this block,
    # and the handler passes anything else to the default one.
    loop.set_exception_handler(_unawaited_task_failed)
    records = _OutageRecords()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(records)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(records)
