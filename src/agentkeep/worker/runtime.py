"""How `serve` executes runs, chosen by RUN_EXECUTION, started and stopped by its lifespan.

- inprocess (the SQLite default): an in-process runner with RUN_CONCURRENCY slots plus the
  recovery sweep; on shutdown running runs get SHUTDOWN_TIMEOUT_SECONDS, then are handed back.
- queue (the PostgreSQL default): `serve` only dispatches, as procrastinate jobs; `agentkeep
  worker` processes execute them and run the sweep.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.config import Settings
from agentkeep.observability.metrics import Metrics
from agentkeep.runs.models import LEASE_OWNER_MAX
from agentkeep.worker.driver import Executor, RunDriver
from agentkeep.worker.inprocess import InProcessRunQueue
from agentkeep.worker.queue import RunQueue
from agentkeep.worker.recovery import RecoverySweep

if TYPE_CHECKING:
    from procrastinate import App
    from psycopg_pool import AsyncConnectionPool

# Connections serve's dispatcher may use: one defer per accepted run, short.
DISPATCH_POOL_SIZE = 4


def execution_mode(settings: Settings) -> str:
    if settings.run_execution != "auto":
        return settings.run_execution
    return "inprocess" if settings.is_sqlite else "queue"


def new_worker_id(kind: str) -> str:
    """A lease owner unique to this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{kind}:{secrets.token_hex(4)}"[-LEASE_OWNER_MAX:]


class RunExecution:
    """The run queue `serve` hands accepted runs to, and whatever executes them in-process."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.executor = executor
        self.mode = execution_mode(settings)
        self.runner: InProcessRunQueue | None = None
        self._sweep: asyncio.Task[None] | None = None
        self._preparing: asyncio.Task[None] | None = None
        self._job_app: App | None = None
        self._pool: AsyncConnectionPool | None = None

    async def start(self) -> RunQueue:
        if self.mode == "inprocess":
            return await self._start_runner()
        # Imported here: SQLite deployments never load procrastinate (and serve starts faster).
        from agentkeep.worker.jobqueue import JobRunQueue, create_job_app, create_pool

        self._pool = create_pool(self.settings, max_size=DISPATCH_POOL_SIZE)
        await self._pool.open(wait=False)
        self._job_app = create_job_app(self.settings, max_size=DISPATCH_POOL_SIZE)
        await self._job_app.open_async(self._pool)
        return JobRunQueue(self._job_app, self.sessionmaker)

    async def _start_runner(self) -> InProcessRunQueue:
        driver = RunDriver(
            self.sessionmaker,
            self.settings,
            owner=new_worker_id("serve"),
            executor=self.executor,
            metrics=self.metrics,
        )
        # Loaded in the background: serve is up at once, and the first run does not wait for it.
        self._preparing = asyncio.create_task(driver.prepare(), name="run-executor-import")
        self.runner = InProcessRunQueue(driver, self.sessionmaker, self.settings.run_concurrency)
        driver.dispatch = self.runner.dispatch
        await self.runner.start()
        sweep = RecoverySweep(
            self.sessionmaker,
            self.settings,
            self.runner,
            metrics=self.metrics,
            executing=driver.active,
        )
        self._sweep = asyncio.create_task(sweep.run_forever(), name="run-recovery-sweep")
        return self.runner

    async def prepared(self) -> None:
        """Wait until the agent loop is imported (at once when this process runs no runs)."""
        if self._preparing is not None:
            await asyncio.shield(self._preparing)

    async def stop(self) -> None:
        for task in (self._sweep, self._preparing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.runner is not None:
            await self.runner.stop(self.settings.shutdown_timeout_seconds)
            await self.runner.driver.close()
        if self._job_app is not None:
            await self._job_app.close_async()
        if self._pool is not None:
            await self._pool.close()
