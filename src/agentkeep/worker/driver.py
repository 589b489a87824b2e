"""Execute one run by id: claim its lease, run the executor under a heartbeat, record the end.

The same driver serves the in-process runner of `serve` and `agentkeep worker`. It never
trusts its own memory over the runs table: every write is fenced on the lease (see
`leases`), so a runner that lost its lease (paused too long, network partition) can neither
append an event nor record an outcome once another runner has taken the run over.

How an attempt ends:
- the executor returns an outcome: recorded with the final status event and audit record;
- a user asked to cancel (announced on the run's cancel topic, agentkeep.notify; the lease
  keeper's renewal reports it too, should the announcement be missed): the executor task is
  cancelled and the run ends `cancelled`/`cancelled`;
- the lease was lost: the attempt stops without writing anything; the new holder owns it;
- the driver itself is cancelled (worker shutdown past its grace period): the run is handed
  back to the queue (status queued, lease cleared, the attempt not counted) and
  CancelledError propagates;
- a thread turn records the messages it exchanged with the model (`threads.history`) in
  the outcome's transaction, then dispatches the thread's next queued turn;
- the database became unavailable (agentkeep.db.faults) while the attempt read, wrote an
  event or recorded its outcome: the attempt is abandoned, never recorded as a failure of
  the run. It is handed back if the database answers again at once; otherwise its lease
  expires and the recovery sweep puts the run back in the queue once the database is back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog
from pydantic import JsonValue
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.agents.repository import AgentRepository
from agentkeep.config import Settings
from agentkeep.db.faults import DatabaseFault, classify
from agentkeep.notify import topics
from agentkeep.notify.announce import hub_of_engine
from agentkeep.observability.metrics import Metrics
from agentkeep.runs.budget import remaining_tokens
from agentkeep.runs.contract import (
    AgentSpec,
    EventSink,
    RunOutcome,
    RunRequest,
    Transcript,
)
from agentkeep.runs.repository import append_event
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.security.secretbox import secretbox_from_settings
from agentkeep.threads.history import ThreadHistory, complete
from agentkeep.tools.context import ToolContext
from agentkeep.worker import leases
from agentkeep.worker.endpoints import EndpointResolver, RunSetupError, organization_endpoint
from agentkeep.worker.lease_keeper import LeaseKeeper, Stop
from agentkeep.worker.leases import Claim, LeaseLost
from agentkeep.worker.reporting import audit_finished, count_finished
from agentkeep.worker.sink import FencedEventSink
from agentkeep.worker.turn_order import Dispatch, dispatch_next_turn

if TYPE_CHECKING:
    from agentkeep.runs.model_clients import ModelClients

logger = structlog.get_logger("agentkeep.worker")

HAND_BACK_WAIT_SECONDS = 5.0
# Transient database trouble: the heartbeat keeps trying until the lease would have expired.
DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


class Executor(Protocol):
    async def __call__(
        self,
        request: RunRequest,
        sink: EventSink,
        *,
        tool_context: ToolContext | None = None,
        transcript: Transcript | None = None,
    ) -> RunOutcome: ...


def default_executor() -> Executor:
    from agentkeep.runs.executor import execute

    return execute


def _now() -> datetime:
    return datetime.now(UTC)


class RunDriver:
    """Executes runs by id for one runner (`owner`: this process's unique worker id)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        owner: str,
        executor: Executor | None = None,
        endpoint_for: EndpointResolver | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.owner = owner
        self._executor = executor
        self.endpoint_for = endpoint_for or organization_endpoint(settings, secretbox_from_settings(settings))
        self.metrics = metrics
        # Set by whoever runs this driver: where the next turn of a thread goes when one ends.
        self.dispatch: Dispatch | None = None
        self.model_clients: ModelClients | None = None
        self.lease_seconds = float(settings.run_lease_seconds)
        self.hub = hub_of_engine(sessionmaker.kw["bind"])
        self.keeper = LeaseKeeper(sessionmaker, owner, self.lease_seconds)
        # Runs this driver is executing right now. The sweep of the same process leaves them
        # alone: a stalled event loop may let their leases lapse before the heartbeat runs,
        # and this process knows they are alive. Other processes still take them over.
        self.active: set[uuid.UUID] = set()

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            raise RuntimeError("RunDriver.prepare() loads the executor before the first run")
        return self._executor

    async def prepare(self) -> None:
        """Load the agent loop off the event loop.

        Importing it (pydantic-ai and its model clients) takes seconds on a slow machine; done
        inline it would stall every heartbeat long enough to lose the leases of running runs.
        """
        if self._executor is None:
            self._executor = await asyncio.to_thread(default_executor)
        if self.model_clients is None:
            from agentkeep.runs.model_clients import ModelClients  # loaded with the agent loop

            # Each run has at most one model request in flight: a connection per run.
            self.model_clients = ModelClients(max_connections=self.settings.run_concurrency)

    async def close(self) -> None:
        """Close the model clients this runner kept open (at shutdown, after its runs)."""
        if self.model_clients is not None:
            await self.model_clients.aclose()
            self.model_clients = None

    async def drive(self, run_id: uuid.UUID) -> RunStatus | None:
        """Execute the run if it can be claimed; the final status this runner recorded, or None."""
        await self.prepare()
        if run_id in self.active:
            return None
        self.active.add(run_id)
        try:
            try:
                claim = await self._claim(run_id)
            except Exception as exc:
                if (fault := classify(exc)) is None:
                    raise
                # Still queued: the recovery sweep dispatches it again once the database is back.
                logger.warning("run_claim_failed", run_id=str(run_id), fault=fault.kind)
                return None
            if claim is None:
                return None
            log = logger.bind(run_id=str(run_id), attempt=claim.attempt, worker=self.owner)
            log.debug("run_started")  # at INFO a run writes one line, run_ended
            status = await _Attempt(self, claim).execute()
            log.info("run_ended", status=status)
            return status
        finally:
            self.active.discard(run_id)

    async def _claim(self, run_id: uuid.UUID) -> Claim | None:
        now = _now()
        async with self.sessionmaker() as session, session.begin():
            claim = await leases.claim(
                session,
                run_id,
                self.owner,
                now=now,
                lease_seconds=self.lease_seconds,
                max_attempts=self.settings.run_max_attempts,
            )
            if claim is not None:
                return claim
            failed = await leases.exhaust(
                session, run_id, now=now, max_attempts=self.settings.run_max_attempts
            )
            if failed:
                await audit_finished(session, run_id)
        if failed:
            logger.warning("run_attempts_exhausted", run_id=str(run_id))
            await self._count(run_id)
            await self.dispatch_next_turn(run_id=run_id)
        return None

    async def build_request(self, claim: Claim) -> RunRequest:
        async with self.sessionmaker() as session:
            version = await AgentRepository(session).get_version(
                claim.org_id, claim.agent_id, claim.agent_version
            )
            if version is None:
                raise RunSetupError("the agent version this run pinned no longer exists")
            try:
                spec = AgentSpec.from_config(version.config)
            except (KeyError, TypeError, ValueError) as exc:
                raise RunSetupError("the agent version's configuration is not valid") from exc
            budget = await remaining_tokens(session, claim.org_id, self.settings.org_monthly_token_budget)
            endpoint = await self.endpoint_for(session, claim.org_id)
            history = await ThreadHistory(session, claim.thread_id).load() if claim.thread_id else []
        return RunRequest(
            run_id=claim.run_id,
            org_id=claim.org_id,
            agent_id=claim.agent_id,
            input=claim.input,
            spec=spec,
            token_budget=budget,
            endpoint=endpoint,
            request_timeout_seconds=self.settings.model_request_timeout_seconds,
            max_retries=self.settings.model_max_retries,
            history=tuple(history),
            model_clients=self.model_clients,
        )

    async def dispatch_next_turn(
        self, thread_id: uuid.UUID | None = None, *, run_id: uuid.UUID | None = None
    ) -> None:
        """Hand the next queued turn of a thread (or of `run_id`'s thread) to the queue."""
        if self.dispatch is not None:
            await dispatch_next_turn(self.sessionmaker, self.dispatch, thread_id, ended=run_id)

    async def _count(self, run_id: uuid.UUID) -> None:
        if self.metrics is None:
            return
        try:
            async with self.sessionmaker() as session:
                await count_finished(session, run_id, self.metrics)
        except Exception as exc:
            if classify(exc) is None:
                raise
            logger.warning("run_metrics_failed", run_id=str(run_id))


class _Attempt:
    """One claimed attempt: the executor task, its heartbeat, and how it ended."""

    def __init__(self, driver: RunDriver, claim: Claim) -> None:
        self.driver = driver
        self.claim = claim
        self.sink = FencedEventSink(driver.sessionmaker, claim, driver.owner)
        self.sink.on_failure = self._events_failed
        self.transcript = Transcript()
        self.stop: Stop | None = None
        self._wake: Callable[[], None] | None = None
        loop = asyncio.get_running_loop()
        self.lease_valid_until = loop.time() + driver.lease_seconds
        self.log = logger.bind(run_id=str(claim.run_id), attempt=claim.attempt, worker=driver.owner)

    async def execute(self) -> RunStatus | None:
        try:
            return await self._execute()
        except Exception as exc:
            fault = self.sink.database_fault or classify(exc)
            if fault is None:
                raise
            return await self._interrupted(fault)
        finally:
            await self.sink.close()

    def _events_failed(self, exc: Exception) -> None:
        """The sink could not write: stop the executor now rather than at its next event."""
        self.halt(Stop.LEASE_LOST if isinstance(exc, LeaseLost) else Stop.WRITE_FAILED)

    async def _execute(self) -> RunStatus | None:
        try:
            request = await self.driver.build_request(self.claim)
        except RunSetupError as exc:
            return await self._finish(RunOutcome(RunStatus.FAILED, exc.stop_reason, error=str(exc)))
        tool_context = ToolContext(run_id=self.claim.run_id, agent_id=self.claim.agent_id)
        work = asyncio.create_task(
            self.driver.executor(request, self.sink, tool_context=tool_context, transcript=self.transcript)
        )
        heartbeat = asyncio.create_task(self._heartbeat(work))
        try:
            outcome = await work
        except asyncio.CancelledError:
            interrupted = _being_cancelled()
            if self.stop is Stop.CANCEL_REQUESTED:
                status = await self._finish(self._cancelled())
                if interrupted:
                    raise
                return status
            if self.stop is Stop.LEASE_LOST and not interrupted:
                self.log.warning("run_lease_lost")
                return None
            if self.stop is Stop.WRITE_FAILED and not interrupted:
                if self.sink.database_fault is not None:
                    return await self._interrupted(self.sink.database_fault)
                # Not the database: a bug. The lease lapses and the sweep tries the run again.
                self.log.error("run_events_unwritable", error=type(self.sink.failure).__name__)
                return None
            # Let the executor unwind first, so it stops emitting before the run changes hands.
            await asyncio.wait([work], timeout=HAND_BACK_WAIT_SECONDS)
            await self._hand_back()
            raise
        except LeaseLost:
            self.log.warning("run_lease_lost")
            return None
        except Exception as exc:
            if self.sink.database_fault is not None or classify(exc) is not None:
                raise  # the attempt is interrupted, not the run failed (see execute)
            self.log.exception("run_executor_crashed")
            outcome = RunOutcome(
                RunStatus.FAILED, StopReason.INTERNAL_ERROR, error="internal error", usage=self.sink.usage
            )
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        if self.sink.database_fault is not None:
            return await self._interrupted(self.sink.database_fault)
        return await self._finish(outcome)

    async def _interrupted(self, fault: DatabaseFault) -> RunStatus | None:
        """No outcome: the run goes back to the queue, now or through its expired lease."""
        self.log.warning("run_attempt_interrupted", fault=fault.kind)
        await self._hand_back()
        return None

    def _cancelled(self) -> RunOutcome:
        return RunOutcome(RunStatus.CANCELLED, StopReason.CANCELLED, usage=self.sink.usage)

    def halt(self, reason: Stop) -> None:
        """Stop the attempt (the lease keeper's verdict, or a cancel request seen)."""
        if self.stop is None:
            self.stop = reason
        if self._wake is not None:
            self._wake()

    async def _heartbeat(self, work: asyncio.Task[RunOutcome]) -> None:
        """Until `work` ends: wake on a cancel announcement (or the hub's safety poll while
        delivery is not guaranteed) and check the run; the lease keeper renews the lease and
        may halt the attempt. Cancels `work` when the attempt must stop."""
        run_id = self.claim.run_id
        with self.driver.hub.subscribe(topics.run_cancel(run_id)) as waiter:
            self._wake = waiter.wake
            work.add_done_callback(lambda _task: waiter.wake())
            self.driver.keeper.keep(run_id, self)
            try:
                while not work.done() and self.stop is None:
                    await waiter.wait(None)
                    if work.done() or self.stop is not None:
                        break
                    try:
                        stop = await self._check()
                    except Exception as exc:  # the keeper decides when the lease is lost
                        self.log.warning("run_cancel_check_failed", error=type(exc).__name__)
                        continue
                    if stop is not None:
                        self.halt(stop)
            finally:
                self.driver.keeper.release(run_id)
                self._wake = None
        if self.stop is not None and not work.done():
            work.cancel()

    async def _check(self) -> Stop | None:
        async with self.driver.sessionmaker() as session:
            state = await leases.lease_state(session, self.claim.run_id, self.driver.owner)
        if not state.held:
            return Stop.LEASE_LOST
        if state.cancel_requested:
            return Stop.CANCEL_REQUESTED
        return None

    async def _finish(self, outcome: RunOutcome) -> RunStatus | None:
        """Record the outcome, its status event and audit record in one transaction, after
        every event the attempt emitted."""
        try:
            await self.sink.drain()
        except LeaseLost:
            self.log.warning("run_lease_lost")
            return None
        run_id = self.claim.run_id
        async with self.driver.sessionmaker() as session, session.begin():
            if not await leases.finish(session, run_id, self.driver.owner, outcome, now=_now()):
                self.log.warning("run_lease_lost_before_outcome", status=outcome.status)
                return None
            thread_id = self.claim.thread_id
            if thread_id is not None:
                messages = complete(self.transcript.messages)
                await ThreadHistory(session, thread_id).append(run_id, messages, _now())
            data: dict[str, JsonValue] = {"status": outcome.status, "stop_reason": outcome.stop_reason}
            await append_event(session, run_id, EventKind.STATUS, data)
            await audit_finished(session, run_id)
        await self.driver._count(run_id)
        if thread_id is not None:
            await self.driver.dispatch_next_turn(thread_id)
        return outcome.status

    async def _hand_back(self) -> None:
        try:
            async with self.driver.sessionmaker() as session, session.begin():
                if await leases.hand_back(
                    session, self.claim.run_id, self.driver.owner, self.sink.usage, now=_now()
                ):
                    await append_event(
                        session, self.claim.run_id, EventKind.STATUS, {"status": RunStatus.QUEUED}
                    )
        except Exception as exc:
            if (fault := classify(exc)) is None:
                raise
            # The lease will expire and the recovery sweep requeues the run (counting the attempt).
            self.log.warning("run_hand_back_failed", fault=fault.kind)
            return
        self.log.info("run_handed_back")


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
