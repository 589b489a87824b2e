"""Run rules: create (idempotent, rate- and budget-limited), list, read, cancel. No HTTP
objects, never a commit: the request's session commits, and the new run is dispatched with
it (its job is part of the transaction) or right after it (the in-process runner)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.models import Agent
from agentkeep.agents.repository import AgentRepository
from agentkeep.agents.service import AgentNotFound
from agentkeep.approvals.ending import write_turn_history
from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.db.faults import classify
from agentkeep.db.session import after_commit
from agentkeep.errors import AppError, Conflict, NotFound
from agentkeep.idempotency.service import IdempotencyScope, IdempotencyStore, fingerprint
from agentkeep.notify import topics
from agentkeep.notify.announce import announce
from agentkeep.runs.budget import next_month_start, remaining_tokens
from agentkeep.runs.creation import insert_run, load_target, queued_run
from agentkeep.runs.models import Run
from agentkeep.runs.repository import RunFilters, RunRepository, append_event, next_turn
from agentkeep.runs.states import TERMINAL_STATUSES, EventKind, RunStatus, StopReason
from agentkeep.threads.repository import Viewer
from agentkeep.webhooks import outbox as webhook_outbox
from agentkeep.webhooks.events import EventType
from agentkeep.worker.queue import RunQueue

AGENT_DISABLED = "disabled"


class AgentDisabled(Conflict):
    type_slug = "agent-disabled"
    title = "Agent disabled"


class RunNotFound(NotFound):
    title = "Run not found"


class RunAlreadyFinished(Conflict):
    type_slug = "run-finished"
    title = "Run already finished"


class BudgetExceeded(AppError):
    status_code = 429
    type_slug = "budget-exceeded"
    title = "Monthly token budget exhausted"


def _refuse_disabled(agent_status: str) -> None:
    if agent_status == AGENT_DISABLED:
        raise AgentDisabled("This agent is disabled; enable it before starting runs.")


def _refuse_spent(tokens_left: int | None, now: datetime) -> None:
    if tokens_left == 0:
        retry_after = math.ceil((next_month_start(now) - now).total_seconds())
        raise BudgetExceeded(
            "The organization's monthly token budget is used up; runs resume next month.",
            headers={"Retry-After": str(retry_after)},
            extra={"retry_after": retry_after},
        )


@dataclass(frozen=True, slots=True)
class RunActor:
    """Who acts, in which organization: a user, or an API key acting for its creator.

    Runs of threads are as private as their threads: only those who may see the thread see
    its runs (`read_all_threads`: every thread of the organization).
    """

    user_id: uuid.UUID
    org_id: uuid.UUID
    api_key_id: uuid.UUID | None = None
    read_all_threads: bool = False

    @property
    def viewer(self) -> Viewer:
        return Viewer(self.org_id, self.user_id, self.api_key_id, read_all=self.read_all_threads)

    @property
    def principal(self) -> str:
        """Whose idempotency keys these are (a key's and its creator's never meet)."""
        return f"api_key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"

    @property
    def actor_type(self) -> ActorType:
        return ActorType.API_KEY if self.api_key_id else ActorType.USER


@dataclass(frozen=True, slots=True)
class CreatedRun:
    run: Run
    replayed: bool


@dataclass(frozen=True, slots=True)
class Turn:
    """Where a run belongs in a thread."""

    thread_id: uuid.UUID
    number: int


class RunService:
    def __init__(
        self,
        session: AsyncSession,
        audit: AuditService,
        default_budget: int | None = None,
    ) -> None:
        self.session = session
        self.repository = RunRepository(session)
        self.agents = AgentRepository(session)
        self.audit = audit
        self.default_budget = default_budget

    async def create(
        self,
        actor: RunActor,
        agent_id: uuid.UUID,
        input_text: str,
        *,
        queue: RunQueue,
        idempotency_key: str | None = None,
    ) -> CreatedRun:
        """Queue a run of the agent's current version; `queue` takes it with the transaction.
        With an idempotency key, a repeat of the same request answers the run it created."""
        now = datetime.now(UTC)
        target = await load_target(self.session, actor.org_id, agent_id, self.default_budget, now)
        if target is None:
            raise AgentNotFound("No such agent.")
        run_id = uuid.uuid4()
        if idempotency_key is not None:
            scope = IdempotencyScope(
                org_id=actor.org_id, principal=actor.principal, scope=f"runs.create:{target.id}"
            )
            request = fingerprint({"agent_id": str(target.id), "input": input_text})
            earlier = await IdempotencyStore(self.session).claim(scope, idempotency_key, request, run_id)
            if earlier is not None:
                return CreatedRun(run=await self.get(actor, earlier), replayed=True)
        _refuse_disabled(target.status)
        _refuse_spent(target.tokens_left, now)
        run = await self._insert(actor, target.id, target.version, input_text, queue, run_id=run_id, now=now)
        return CreatedRun(run=run, replayed=False)

    async def queue_run(
        self,
        actor: RunActor,
        agent: Agent,
        version: int,
        input_text: str,
        queue: RunQueue,
        *,
        turn: Turn | None = None,
        run_id: uuid.UUID | None = None,
    ) -> Run:
        """Queue a run of `version` of `agent` (a live one) once the agent and the budget allow it."""
        _refuse_disabled(agent.status)
        now = datetime.now(UTC)
        _refuse_spent(await remaining_tokens(self.session, actor.org_id, self.default_budget, now), now)
        return await self._insert(
            actor, agent.id, version, input_text, queue, run_id=run_id or uuid.uuid4(), now=now, turn=turn
        )

    async def _insert(
        self,
        actor: RunActor,
        agent_id: uuid.UUID,
        version: int,
        input_text: str,
        queue: RunQueue,
        *,
        run_id: uuid.UUID,
        now: datetime,
        turn: Turn | None = None,
    ) -> Run:
        """Write the run, its first event and its audit record; `queue` takes it in the same
        transaction (its job) or once it commits (the in-process runner)."""
        dispatched = await queue.accept(self.session, run_id)
        run = queued_run(
            run_id,
            org_id=actor.org_id,
            agent_id=agent_id,
            agent_version=version,
            created_by=actor.user_id,
            api_key_id=actor.api_key_id,
            thread_id=turn.thread_id if turn else None,
            thread_turn=turn.number if turn else None,
            input_text=input_text,
            now=now,
            dispatched=dispatched,
        )
        await insert_run(self.session, run)
        details: dict[str, object] = {"agent_id": str(agent_id), "agent_version": version}
        if turn is not None:
            details.update(thread_id=str(turn.thread_id), turn=turn.number)
        await self.audit.record(
            AuditAction.RUN_CREATED,
            user_id=actor.user_id,
            org_id=actor.org_id,
            actor_type=actor.actor_type,
            resource_type="run",
            resource_id=run.id,
            details=details,
        )
        return run

    async def get(self, actor: RunActor, run_id: uuid.UUID) -> Run:
        run = await self.repository.get_visible(actor.viewer, run_id)
        if run is None:
            raise RunNotFound("No such run.")
        return run

    async def page(
        self, actor: RunActor, filters: RunFilters, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self.repository.page_visible(actor.viewer, filters, limit, cursor)

    async def cancel(self, actor: RunActor, run_id: uuid.UUID, queue: RunQueue) -> Run:
        """Queued: cancelled now. Running: its runner is asked to stop (it records the end).
        Asking again while the runner stops is a no-op; a finished run is a 409."""
        run = await self.get(actor, run_id)
        if not await self.stop(actor, run):
            run = await self.repository.reload(run)
            if RunStatus(run.status) in TERMINAL_STATUSES:
                raise RunAlreadyFinished(
                    f"This run has already finished ({run.status}).", extra={"run_status": run.status}
                )
            return run  # running, and its cancellation was already requested
        if run.thread_id is not None:
            self._dispatch_next_turn_after_commit(queue, run.thread_id)
        return await self.repository.reload(run)

    async def stop(self, actor: RunActor, run: Run) -> bool:
        """Cancel a queued run or one waiting for approval, or ask a running one's runner to
        stop, audited; False when the run had finished or its runner was already asked."""
        now = datetime.now(UTC)
        if await self.repository.cancel_if(RunStatus.QUEUED, actor.org_id, run.id, now):
            previous = RunStatus.QUEUED
            await append_event(
                self.session,
                run.id,
                EventKind.STATUS,
                {"status": RunStatus.CANCELLED.value, "stop_reason": StopReason.CANCELLED.value},
                now=now,
            )
        elif await self.repository.cancel_if(RunStatus.REQUIRES_ACTION, actor.org_id, run.id, now):
            # Waiting for approval: no runner holds it, so its end is written here.
            previous = RunStatus.REQUIRES_ACTION
            await write_turn_history(self.session, run.id, run.thread_id, now)
            await append_event(
                self.session,
                run.id,
                EventKind.STATUS,
                {"status": RunStatus.CANCELLED.value, "stop_reason": StopReason.CANCELLED.value},
                now=now,
            )
        elif await self.repository.request_cancel_if_running(actor.org_id, run.id, now):
            previous = RunStatus.RUNNING
            announce(self.session, topics.run_cancel(run.id))  # its runner stops at once
        else:
            return False
        if previous != RunStatus.RUNNING:  # a running run's end is announced by its runner
            await webhook_outbox.record(
                self.session,
                org_id=actor.org_id,
                type=EventType.RUN_CANCELLED,
                data={"run_id": str(run.id), "status": "cancelled", "stop_reason": "cancelled"},
            )
        await self.audit.record(
            AuditAction.RUN_CANCELLED,
            user_id=actor.user_id,
            org_id=actor.org_id,
            actor_type=actor.actor_type,
            resource_type="run",
            resource_id=run.id,
            details={"agent_id": str(run.agent_id), "from_status": previous.value},
        )
        return True

    def _dispatch_next_turn_after_commit(self, queue: RunQueue, thread_id: uuid.UUID) -> None:
        """A queued turn cancelled: the one after it may start (its runner ends a running one)."""

        async def dispatch() -> None:
            try:
                run_id = await next_turn(self.session, thread_id)
            except Exception as exc:
                if classify(exc) is None:
                    raise
                return  # the recovery sweep dispatches it
            if run_id is not None:
                await queue.dispatch(run_id)

        after_commit(self.session, dispatch)
