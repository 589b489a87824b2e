"""The seam between accepting a run and executing it.

`accept` takes a new run inside the transaction that creates it. The procrastinate job
queue writes the run's job in that very transaction (an outbox: the run and its job commit
together, or neither does), so an accepted run is never without its job. The in-process
runner can only take a run once it is committed: it hands the run over after the commit.

`dispatch` hands an already committed, queued run over again (the recovery sweep, a turn
whose predecessor ended, a runner handing a run back). It never raises: a run it could not
hand over stays queued and the recovery sweep dispatches it again, so a run the API
accepted is never lost.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Protocol

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession


class RunQueue(Protocol):
    async def accept(self, session: AsyncSession, run_id: uuid.UUID) -> bool:
        """Take the run being created in `session`'s transaction. True when the hand-over is
        part of that transaction (the run is dispatched as it commits); False when it
        follows the commit."""
        ...

    async def dispatch(self, run_id: uuid.UUID) -> None: ...


async def get_run_queue(request: Request) -> RunQueue:
    """The app's run queue (created by the lifespan from RUN_EXECUTION)."""
    queue: RunQueue = request.app.state.run_queue
    return queue


RunQueueDep = Annotated[RunQueue, Depends(get_run_queue)]
