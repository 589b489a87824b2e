"""A run's events as Server-Sent Events: replay from the database, then follow live.

Following is pushed, not polled: the stream subscribes to the run's notification topic
(agentkeep.notify) before its first read, and reads again only when a writer announces a
committed event (every `append_event` does), so an idle stream makes no query at all. Each
read uses a short-lived session that returns its connection to the pool at once, so a
thousand open streams hold no connection. When delivery is not guaranteed (SQLite, whose
announcements reach only the writing process, or the PostgreSQL listener reconnecting) the
hub's safety poll re-reads every second, and a reconnected listener wakes every stream.
The database stays the source of truth: every instance sends the same history in the same
order, whichever process runs the run. A stream ends after a terminal status event, when
the run is gone, or when the client disconnects.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi.sse import ServerSentEvent
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.notify import topics
from agentkeep.notify.hub import Hub
from agentkeep.runs.models import RunEvent
from agentkeep.runs.repository import EVENT_BATCH, events_after, run_status
from agentkeep.runs.states import TERMINAL_STATUSES, EventKind

KEEPALIVE_COMMENT = "keepalive"


@dataclass(frozen=True, slots=True)
class StreamTiming:
    # Below FastAPI's own 15 s idle ping, so an idle stream carries only this comment.
    keepalive_seconds: float = 14.0


def is_terminal(event: RunEvent) -> bool:
    return event.kind == EventKind.STATUS.value and event.data.get("status") in TERMINAL_STATUSES


def to_sse(event: RunEvent) -> ServerSentEvent:
    return ServerSentEvent(id=str(event.seq), event=event.kind, data=event.data)


async def follow_run_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    hub: Hub,
    org_id: uuid.UUID,
    run_id: uuid.UUID,
    after: int,
    timing: StreamTiming,
) -> AsyncIterator[ServerSentEvent]:
    """Events of the run with seq > `after`, then live ones, until the run's end."""
    last_sent = time.monotonic()
    finished_reads = 0
    with hub.subscribe(topics.run_events(run_id)) as waiter:
        read = True
        while True:
            if read:
                async with sessionmaker() as session:
                    events = await events_after(session, org_id, run_id, after, EVENT_BATCH)
                    status = None if events else await run_status(session, org_id, run_id)
                for event in events:
                    after = event.seq
                    yield to_sse(event)
                    if is_terminal(event):
                        return
                if events:
                    last_sent = time.monotonic()
                    finished_reads = 0
                    if len(events) == EVENT_BATCH:
                        continue  # more history to replay: no pause
                elif status is None:
                    return  # the run is gone
                elif status in TERMINAL_STATUSES:
                    # Finished, and its terminal event was sent before `after` (a resumed
                    # stream): one more read catches an event committed just after the
                    # status, then stop.
                    finished_reads += 1
                    if finished_reads > 1:
                        return
                    continue
            remaining = timing.keepalive_seconds - (time.monotonic() - last_sent)
            woken = await waiter.wait(max(remaining, 0.0))
            # Woken: a writer committed. Not woken while delivery is not guaranteed: the
            # safety poll reads anyway. Otherwise it is only time for a keepalive.
            read = woken or not hub.reliable
            if time.monotonic() - last_sent >= timing.keepalive_seconds:
                yield ServerSentEvent(comment=KEEPALIVE_COMMENT)
                last_sent = time.monotonic()
