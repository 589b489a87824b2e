"""Which `agentkeep worker` processes are alive: procrastinate's worker registry.

procrastinate registers each running worker in `procrastinate_workers` and beats its
`last_heartbeat` every HEARTBEAT_SECONDS; a worker that stops cleanly deletes its row, one
that died is pruned by the others once STALLED_AFTER_SECONDS passed. The same silence makes
a worker's `doing` jobs stalled, so a worker counted here is one whose jobs are still its own.
This module stays free of procrastinate: `serve` reads it on every scrape, SQLite included.
"""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

# procrastinate's own defaults, stated here so the worker, the sweep and the gauge agree.
HEARTBEAT_SECONDS = 10.0
STALLED_AFTER_SECONDS = 30.0

_LIVE_WORKERS = text(
    "SELECT count(*) FROM procrastinate_workers"
    " WHERE last_heartbeat > now() - make_interval(secs => :seconds)"
).bindparams(bindparam("seconds", type_=Integer))


async def live_workers(session: AsyncSession, within_seconds: float = STALLED_AFTER_SECONDS) -> int:
    """Workers that sent a heartbeat within `within_seconds`, by the database's clock (worker
    clocks do not matter)."""
    return int(await session.scalar(_LIVE_WORKERS, {"seconds": int(within_seconds)}) or 0)
