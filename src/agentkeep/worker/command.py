"""`agentkeep worker`: execute runs from the procrastinate queue, and sweep for lost ones.

Any number of workers, on any machine, share the database. Each executes up to
RUN_CONCURRENCY runs at once and runs the recovery sweep. SIGTERM or SIGINT: stop fetching
jobs, let running runs finish for up to SHUTDOWN_TIMEOUT_SECONDS, then hand the rest back
to the queue (another worker picks them up), and exit 0.

A database outage does not end the process (worker/outages.py).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog
from prometheus_client import start_http_server

from agentkeep.config import Settings
from agentkeep.db.engine import create_engine, create_sessionmaker
from agentkeep.notify.listener import listen_for
from agentkeep.observability.metrics import Metrics
from agentkeep.webhooks.dispatch import background_delivery, register_delivery_task
from agentkeep.worker.driver import Executor, RunDriver
from agentkeep.worker.jobqueue import JobRunQueue, create_job_app, register_run_task
from agentkeep.worker.outages import quiet_outage_tracebacks, work_until_stopped
from agentkeep.worker.recovery import RecoverySweep
from agentkeep.worker.runtime import new_worker_id

logger = structlog.get_logger("agentkeep.worker")

# procrastinate's connections: its LISTEN connection, fetching, finishing jobs, abort polling
# and its heartbeat. None is held while a job runs, so this does not grow with RUN_CONCURRENCY.
QUEUE_POOL_SIZE = 6


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (with uvicorn[standard]): a worker spends
    much of its CPU in the event loop and socket writes, which uvloop does in C. None: asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        return None
    return uvloop.new_event_loop


async def run_worker(
    settings: Settings,
    *,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    executor: Executor | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then shut down gracefully."""
    engine = create_engine(settings, pool_size=settings.worker_db_pool_size)
    sessionmaker = create_sessionmaker(engine)
    notify_listener = listen_for(engine, settings)  # cancel requests wake their runs
    metrics = Metrics()
    owner = new_worker_id("worker")
    driver = RunDriver(sessionmaker, settings, owner=owner, executor=executor, metrics=metrics)
    await driver.prepare()
    job_app = create_job_app(settings, max_size=QUEUE_POOL_SIZE)
    register_run_task(job_app, driver.drive)
    webhooks = background_delivery(sessionmaker, settings, "queue", metrics, job_app)
    register_delivery_task(job_app, webhooks.sender)
    queue = JobRunQueue(job_app, sessionmaker)
    driver.dispatch = queue.dispatch
    sweep = RecoverySweep(sessionmaker, settings, queue, metrics=metrics, executing=driver.active)

    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if stop is None else ()
    stop = stop or asyncio.Event()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    metrics_server = None
    if metrics_port is not None:
        metrics_server, _thread = start_http_server(metrics_port, metrics_host, registry=metrics.registry)
    try:
        with quiet_outage_tracebacks():
            async with job_app.open_async():
                sweeping = asyncio.create_task(sweep.run_forever(), name="run-recovery-sweep")
                webhooks.start()
                logger.info("worker_started", worker=owner, concurrency=settings.run_concurrency)
                await work_until_stopped(job_app, settings, owner, stop)
                sweeping.cancel()
                await asyncio.gather(sweeping, return_exceptions=True)
                await webhooks.stop()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        if notify_listener is not None:
            await notify_listener.stop()
        await driver.close()
        await engine.dispose()
        logger.info("worker_stopped", worker=owner)
