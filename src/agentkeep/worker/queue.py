"""The seam between accepting a run and executing it.

`dispatch` hands a committed, queued run to whatever executes runs: the in-process runner
(embedded default) or the procrastinate job queue (production). It never raises: a run it
could not hand over stays queued and the recovery sweep dispatches it again, so a run the
API accepted is never lost.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Protocol

from fastapi import Depends, Request


class RunQueue(Protocol):
    async def dispatch(self, run_id: uuid.UUID) -> None: ...


async def get_run_queue(request: Request) -> RunQueue:
    """The app's run queue (created by the lifespan from RUN_EXECUTION)."""
    queue: RunQueue = request.app.state.run_queue
    return queue


RunQueueDep = Annotated[RunQueue, Depends(get_run_queue)]
