"""The turns of a thread run one at a time: when one ends, the next queued one is dispatched.

The claim rule (`leases.turn_is_next`) makes a waiting turn unclaimable while an earlier
one is unfinished; this hands the next one to the queue as soon as that changes, so it does
not wait for the recovery sweep (which dispatches it anyway within REDISPATCH_AFTER).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.db.faults import classify
from agentkeep.runs.repository import next_turn, next_turn_after

logger = structlog.get_logger("agentkeep.worker")

# Hands a queued run to the queue a process executes from (never raises).
Dispatch = Callable[[uuid.UUID], Awaitable[None]]


async def dispatch_next_turn(
    sessionmaker: async_sessionmaker[AsyncSession],
    dispatch: Dispatch,
    thread_id: uuid.UUID | None,
    *,
    ended: uuid.UUID | None = None,
) -> None:
    """Dispatch the thread's next queued turn: of `thread_id`, or of the thread of the run
    `ended`. A database fault leaves it to the recovery sweep."""
    try:
        async with sessionmaker() as session:
            if thread_id is not None:
                run_id = await next_turn(session, thread_id)
            elif ended is not None:
                run_id = await next_turn_after(session, ended)
            else:
                return
    except Exception as exc:
        if (fault := classify(exc)) is None:
            raise
        logger.warning("run_next_turn_unknown", thread_id=str(thread_id), fault=fault.kind)
        return
    if run_id is not None:
        await dispatch(run_id)
