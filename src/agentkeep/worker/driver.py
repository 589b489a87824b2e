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
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.agents.repository import AgentRepository
from agentkeep.config import Settings
from agentkeep.db.faults import classify
from agentkeep.db.session import create_read_sessionmaker
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
from agentkeep.runs.states import RunStatus
from agentkeep.security.secretbox import secretbox_from_settings
from agentkeep.threads.history import ThreadHistory
from agentkeep.tools.context import ToolContext
from agentkeep.worker import leases
from agentkeep.worker.attempt import Attempt
from agentkeep.worker.endpoints import EndpointResolver, RunSetupError, organization_endpoint
from agentkeep.worker.lease_keeper import LeaseKeeper
from agentkeep.worker.leases import Claim, Finished
from agentkeep.worker.reporting import audit_finished, count_finished, count_finished_run
from agentkeep.worker.turn_order import Dispatch, dispatch_next_turn

if TYPE_CHECKING:
    from agentkeep.mcp.connect import McpEgress
    from agentkeep.runs.executor import AgentCache
    from agentkeep.runs.model_clients import ModelClients

logger = structlog.get_logger("agentkeep.worker")

# Transient database trouble: the heartbeat keeps trying until the lease would have expired.
DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
# Parsed agent versions a runner keeps (the least recently used go first).
CACHED_SPECS = 1024


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


def _agent_cache() -> AgentCache:
    from agentkeep.runs.executor import AgentCache

    return AgentCache(size=CACHED_SPECS)


def _now() -> datetime:
    return datetime.now(UTC)


class _BuildCrashed(Exception):
    """Building a claimed run's request raised something unexpected (the claim rolled back)."""


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
        self.secretbox = secretbox_from_settings(settings)
        self.endpoint_for = endpoint_for or organization_endpoint(settings, self.secretbox)
        self.mcp_egress: McpEgress | None = None
        self.metrics = metrics
        # Set by whoever runs this driver: where the next turn of a thread goes when one ends.
        self.dispatch: Dispatch | None = None
        self.model_clients: ModelClients | None = None
        self.agents: AgentCache | None = None
        self.lease_seconds = float(settings.run_lease_seconds)
        engine = sessionmaker.kw["bind"]
        self.hub = hub_of_engine(engine)
        # PostgreSQL: sessions without a transaction, for event batches written in one statement.
        self.autocommit = create_read_sessionmaker(engine) if engine.dialect.name == "postgresql" else None
        self.keeper = LeaseKeeper(sessionmaker, owner, self.lease_seconds)
        # Runs this driver is executing right now. The sweep of the same process leaves them
        # alone: a stalled event loop may let their leases lapse before the heartbeat runs,
        # and this process knows they are alive. Other processes still take them over.
        self.active: set[uuid.UUID] = set()
        # Agent versions are immutable rows: each is read and parsed once per process.
        self._specs: OrderedDict[tuple[uuid.UUID, uuid.UUID, int], AgentSpec] = OrderedDict()

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
        if self.agents is None:
            self.agents = await asyncio.to_thread(_agent_cache)

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
                started = await self._claim(run_id)
            except Exception as exc:
                if (fault := classify(exc)) is None:
                    raise
                # Still queued: the recovery sweep dispatches it again once the database is back.
                logger.warning("run_claim_failed", run_id=str(run_id), fault=fault.kind)
                return None
            if started is None:
                return None
            claim, request = started
            log = logger.bind(run_id=str(run_id), attempt=claim.attempt, worker=self.owner)
            log.debug("run_started")  # at INFO a run writes one line, run_ended
            status = await Attempt(self, claim, request).execute()
            log.info("run_ended", status=status)
            return status
        finally:
            self.active.discard(run_id)

    async def _claim(self, run_id: uuid.UUID) -> tuple[Claim, RunRequest | RunSetupError] | None:
        """Claim the run and build its request in one transaction (a database fault rolls
        both back: the run stays queued)."""
        try:
            return await self._claim_and_build(run_id)
        except _BuildCrashed as crash:
            # A bug, not the run's doing: the run fails (internal_error) rather than go back
            # to the queue unclaimed, to crash the same way forever.
            logger.error("run_setup_crashed", run_id=str(run_id), exc_info=crash.__cause__)
            async with self.sessionmaker() as session, session.begin():
                claim = await self._lease(session, run_id, _now())
            if claim is None:
                return None
            return claim, RunSetupError("internal error while preparing the run")

    async def _lease(self, session: AsyncSession, run_id: uuid.UUID, now: datetime) -> Claim | None:
        return await leases.claim(
            session,
            run_id,
            self.owner,
            now=now,
            lease_seconds=self.lease_seconds,
            max_attempts=self.settings.run_max_attempts,
        )

    async def _claim_and_build(self, run_id: uuid.UUID) -> tuple[Claim, RunRequest | RunSetupError] | None:
        now = _now()
        async with self.sessionmaker() as session, session.begin():
            claim = await self._lease(session, run_id, now)
            if claim is not None:
                request: RunRequest | RunSetupError
                try:
                    request = await self.build_request(claim, session)
                except RunSetupError as exc:
                    request = exc  # the attempt fails the run, under the lease taken here
                except Exception as exc:
                    if classify(exc) is not None:
                        raise
                    raise _BuildCrashed from exc
                return claim, request
            failed = await leases.exhaust(
                session, run_id, now=now, max_attempts=self.settings.run_max_attempts
            )
            if failed:
                await audit_finished(session, run_id)
        if failed:
            logger.warning("run_attempts_exhausted", run_id=str(run_id))
            await self._count_from_database(run_id)
            await self.dispatch_next_turn(run_id=run_id)
        return None

    async def build_request(self, claim: Claim, session: AsyncSession | None = None) -> RunRequest:
        """The run's request: its pinned agent version (kept per process: versions never
        change), the organization's budget and endpoint, a thread turn's history."""
        if session is None:
            async with self.sessionmaker() as own:
                return await self.build_request(claim, own)
        spec = await self._spec(session, claim)
        # The claim read the organization's budget and whether it has a provider.
        budget = await remaining_tokens(
            session, claim.org_id, self.settings.org_monthly_token_budget, own_budget=claim.org_budget
        )
        endpoint = await self.endpoint_for(session, claim.org_id, has_provider=claim.has_provider)
        history = await ThreadHistory(session, claim.thread_id).load() if claim.thread_id else []
        # Loaded with the agent loop (prepare() imports it off the event loop): no import cost here.
        from agentkeep.approvals.pause import load_resume
        from agentkeep.mcp.connect import McpEgress
        from agentkeep.mcp.run_tools import load_mcp_servers

        mcp_tools = spec.mcp_tools
        mcp_servers = (
            await load_mcp_servers(session, self.secretbox, claim.org_id, mcp_tools) if mcp_tools else ()
        )
        if self.mcp_egress is None:
            self.mcp_egress = McpEgress.from_settings(self.settings)
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
            agents=self.agents,
            mcp_servers=mcp_servers,
            mcp_egress=self.mcp_egress,
            # A run that paused for approval continues from its pause (one lookup by key).
            resume=await load_resume(session, claim.run_id) if claim.may_resume else None,
        )

    async def _spec(self, session: AsyncSession, claim: Claim) -> AgentSpec:
        key = (claim.org_id, claim.agent_id, claim.agent_version)
        spec = self._specs.get(key)
        if spec is not None:
            self._specs.move_to_end(key)
            return spec
        version = await AgentRepository(session).get_version(*key)
        if version is None:
            raise RunSetupError("the agent version this run pinned no longer exists")
        try:
            spec = AgentSpec.from_config(version.config)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunSetupError("the agent version's configuration is not valid") from exc
        self._specs[key] = spec
        while len(self._specs) > CACHED_SPECS:
            self._specs.popitem(last=False)
        return spec

    async def dispatch_next_turn(
        self, thread_id: uuid.UUID | None = None, *, run_id: uuid.UUID | None = None
    ) -> None:
        """Hand the next queued turn of a thread (or of `run_id`'s thread) to the queue."""
        if self.dispatch is not None:
            await dispatch_next_turn(self.sessionmaker, self.dispatch, thread_id, ended=run_id)

    def count(self, run: Finished) -> None:
        count_finished_run(run, self.metrics)

    async def _count_from_database(self, run_id: uuid.UUID) -> None:
        if self.metrics is None:
            return
        try:
            async with self.sessionmaker() as session:
                await count_finished(session, run_id, self.metrics)
        except Exception as exc:
            if classify(exc) is None:
                raise
            logger.warning("run_metrics_failed", run_id=str(run_id))
