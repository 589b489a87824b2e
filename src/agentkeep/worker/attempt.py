"""One claimed attempt of a run: the executor task, its watch for cancellation and lease
loss, and how it ended (see worker/driver.py for the rules)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from pydantic import JsonValue

from agentkeep.db.faults import DatabaseFault, classify
from agentkeep.notify import topics
from agentkeep.runs.contract import Pause, RunOutcome, RunRequest, Transcript
from agentkeep.runs.repository import append_event, append_events
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.threads.history import ThreadHistory, complete
from agentkeep.tools.context import ToolContext
from agentkeep.webhooks import outbox as webhook_outbox
from agentkeep.webhooks.events import EventType, waiting_data
from agentkeep.worker import leases
from agentkeep.worker.endpoints import RunSetupError
from agentkeep.worker.lease_keeper import Stop
from agentkeep.worker.leases import Claim, LeaseLost
from agentkeep.worker.reporting import audit_finished
from agentkeep.worker.sink import FencedEventSink

if TYPE_CHECKING:
    from agentkeep.worker.driver import RunDriver

logger = structlog.get_logger("agentkeep.worker")

# On shutdown, how long the executor may take to unwind before its run is handed back.
HAND_BACK_WAIT_SECONDS = 5.0


def _now() -> datetime:
    return datetime.now(UTC)


class Attempt:
    """One claimed attempt: the executor task, its heartbeat, and how it ended."""

    def __init__(self, driver: RunDriver, claim: Claim, request: RunRequest | RunSetupError) -> None:
        self.driver = driver
        self.claim = claim
        self.request = request
        self.sink = FencedEventSink(driver.sessionmaker, claim, driver.owner, driver.autocommit)
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
        request = self.request
        if isinstance(request, RunSetupError):
            return await self._finish(RunOutcome(RunStatus.FAILED, request.stop_reason, error=str(request)))
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
        if outcome.pause is not None:
            return await self._pause(outcome, outcome.pause, request)
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

    async def _pause(self, outcome: RunOutcome, pause: Pause, request: RunRequest) -> RunStatus | None:
        """Store the pause and release the run (`requires_action`), its events and usage in
        one transaction: no worker holds it while people decide (approvals/pause.py)."""
        try:
            pending = await self.sink.settle()
        except LeaseLost:
            self.log.warning("run_lease_lost")
            return None
        from agentkeep.approvals.pause import store_pause  # loaded with the agent loop

        run_id, now = self.claim.run_id, _now()
        async with self.driver.sessionmaker() as session, session.begin():
            if not await leases.pause(session, run_id, self.driver.owner, outcome.usage, now=now):
                self.log.warning("run_lease_lost_before_outcome", status=outcome.status)
                return None
            deadline = await store_pause(
                session,
                run_id=run_id,
                org_id=self.claim.org_id,
                paused=pause.paused,
                calls=pause.calls,
                timeout_seconds=request.spec.approval_timeout_seconds,
                now=now,
            )
            requested: list[tuple[EventKind, dict[str, JsonValue]]] = [
                (
                    EventKind.APPROVAL_REQUESTED,
                    {
                        "tool": call.tool,
                        "tool_call_id": call.tool_call_id,
                        "args": call.args,
                        "deadline": deadline.isoformat(),
                    },
                )
                for call in pause.calls
            ]
            status: dict[str, JsonValue] = {"status": RunStatus.REQUIRES_ACTION}
            await append_events(
                session, run_id, [*pending, *requested, (EventKind.STATUS, status)], self.sink.next_seq
            )
            await webhook_outbox.record(
                session,
                org_id=self.claim.org_id,
                type=EventType.RUN_REQUIRES_ACTION,
                data=waiting_data(run_id, pause.calls, deadline),
            )
        self.log.info("run_paused", calls=len(pause.calls))
        return RunStatus.REQUIRES_ACTION

    async def _finish(self, outcome: RunOutcome) -> RunStatus | None:
        """Record the outcome, the events not written yet, the final status event and the
        audit record in one transaction, after every event the attempt emitted."""
        try:
            pending = await self.sink.settle()
        except LeaseLost:
            self.log.warning("run_lease_lost")
            return None
        run_id = self.claim.run_id
        data: dict[str, JsonValue] = {"status": outcome.status, "stop_reason": outcome.stop_reason}
        async with self.driver.sessionmaker() as session, session.begin():
            # The outcome's UPDATE is the fence: it matches only while the lease is held. Every
            # earlier event is written, or written with it: the sink knows the next number.
            finished = await leases.finish(
                session,
                run_id,
                self.driver.owner,
                outcome,
                now=_now(),
                events=[*pending, (EventKind.STATUS, data)],
                first_seq=self.sink.next_seq,
            )
            if finished is None:
                self.log.warning("run_lease_lost_before_outcome", status=outcome.status)
                return None
            thread_id = self.claim.thread_id
            if thread_id is not None:
                messages = complete(self.transcript.messages)
                await ThreadHistory(session, thread_id).append(run_id, messages, _now())
            await audit_finished(session, run_id, finished, outcome.output)
        self.driver.count(finished)
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
