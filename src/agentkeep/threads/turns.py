"""Turns of a thread: each is a run of the thread's agent that sees the thread's history.

Starting a turn takes the thread's next turn number under the thread's lock
(`ThreadRepository.start_turn`), so concurrent turns of one thread are decided one at a
time, then applies the multitask policy to the thread's unfinished turns:

- reject: any unfinished turn makes this one a 409 `thread-busy` (nothing is written);
- enqueue: the turn is queued behind them; the runner claims a turn only once every
  earlier turn of its thread has finished (`worker.leases.turn_is_next`), and each finished
  turn dispatches the next;
- interrupt: the unfinished turns are cancelled (a running one keeps the messages it
  exchanged so far), and the new turn runs as soon as they have stopped.

A turn is a run like any other (limits, budget, events, audit, idempotency); only the
history it is given and the order it runs in differ. Never commits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.repository import AgentRepository
from agentkeep.agents.service import AgentNotFound
from agentkeep.audit.service import AuditService
from agentkeep.errors import Conflict
from agentkeep.idempotency.service import IdempotencyScope, IdempotencyStore, fingerprint
from agentkeep.runs.models import Run
from agentkeep.runs.service import CreatedRun, RunActor, RunService, Turn
from agentkeep.runs.states import ACTIVE_STATUSES
from agentkeep.threads.models import Thread
from agentkeep.threads.repository import ThreadRepository
from agentkeep.threads.schemas import Multitask, TurnCreate
from agentkeep.threads.service import AgentArchived, ThreadNotFound
from agentkeep.worker.queue import RunQueue


class ThreadBusy(Conflict):
    type_slug = "thread-busy"
    title = "Thread busy"


class TurnService:
    def __init__(self, session: AsyncSession, audit: AuditService, default_budget: int | None) -> None:
        self.session = session
        self.threads = ThreadRepository(session)
        self.agents = AgentRepository(session)
        self.runs = RunService(session, audit, default_budget)

    async def start(
        self,
        actor: RunActor,
        thread_id: uuid.UUID,
        body: TurnCreate,
        *,
        queue: RunQueue,
        idempotency_key: str | None,
    ) -> CreatedRun:
        """Queue the next turn of a thread the actor may see, per `body.multitask`."""
        viewer = actor.viewer
        if await self.threads.get(viewer, thread_id) is None:
            raise ThreadNotFound("No such thread.")
        run_id = uuid.uuid4()
        if idempotency_key is not None:
            scope = IdempotencyScope(actor.org_id, actor.principal, f"threads.runs:{thread_id}")
            request = fingerprint({"input": body.input, "multitask": body.multitask.value})
            earlier = await IdempotencyStore(self.session).claim(scope, idempotency_key, request, run_id)
            if earlier is not None:
                return CreatedRun(run=await self.runs.get(actor, earlier), replayed=True)
        thread = await self.threads.start_turn(viewer, thread_id, datetime.now(UTC))
        if thread is None:  # deleted since it was read
            raise ThreadNotFound("No such thread.")
        agent = await self.agents.get_any_in_org(actor.org_id, thread.agent_id)
        if agent is None:
            raise AgentNotFound("The thread's agent no longer exists.")
        if agent.archived_at is not None:
            raise AgentArchived("The thread's agent is archived; its conversations are read-only.")
        await self._make_room(actor, thread, body.multitask)
        version = thread.agent_version or agent.version
        run = await self.runs.queue_run(
            actor,
            agent,
            version,
            body.input,
            queue,
            turn=Turn(thread_id=thread.id, number=thread.turn_count),
            run_id=run_id,
        )
        return CreatedRun(run=run, replayed=False)

    async def _make_room(self, actor: RunActor, thread: Thread, policy: Multitask) -> None:
        unfinished = await self._unfinished(thread.id)
        if not unfinished or policy is Multitask.ENQUEUE:
            return
        if policy is Multitask.REJECT:
            busy = unfinished[-1]
            raise ThreadBusy(
                f"A turn of this thread is {busy.status}; wait for it, or send multitask "
                "`enqueue` or `interrupt`.",
                extra={"run_id": str(busy.id), "run_status": busy.status},
            )
        for run in unfinished:
            await self.runs.stop(actor, run)

    async def _unfinished(self, thread_id: uuid.UUID) -> list[Run]:
        statement = (
            select(Run)
            .where(Run.thread_id == thread_id, Run.status.in_(sorted(ACTIVE_STATUSES)))
            .order_by(Run.thread_turn)
        )
        return list((await self.session.scalars(statement)).all())
