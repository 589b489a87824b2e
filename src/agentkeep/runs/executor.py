"""The agent loop: one run of an agent version on one input, through pydantic-ai.

`execute` builds a pydantic-ai `Agent` for the spec, drives it node by node with
`Agent.iter`, emits every step to the sink as it happens and maps how the run ended to a
`RunOutcome`. Status events are the driver's; cancellation (`asyncio.CancelledError`)
propagates untouched.

Tool calls that need a person's approval (runs/approval_tools.py) end the pydantic-ai run
with `DeferredToolRequests`: the outcome is then a pause (`requires_action`) carrying every
message so far, the usage and the pending calls. A request with `resume` continues that
run: the stored messages as history, the decisions as `deferred_tool_results`, the usage so
far as the run's starting usage (limits and budgets count across the pause).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from pydantic import BaseModel, JsonValue
from pydantic_ai import Agent
from pydantic_ai.capabilities.process_history import ProcessHistory
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRequestTimeout,
    ModelTimeoutError,
    OutputTokenLimitExceeded,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.run import AgentRun
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import DeferredToolRequests
from pydantic_ai.toolsets import FunctionToolset
from pydantic_ai.usage import RunUsage, UsageLimits

from agentkeep.approvals.pause import Paused
from agentkeep.db.faults import classify
from agentkeep.runs.agent_tools import RunDeps, build_tools
from agentkeep.runs.approval_tools import (
    agent_names,
    builtin_approvals,
    mcp_toolsets,
    needing_approval,
    pending_calls,
)
from agentkeep.runs.context_window import context_window
from agentkeep.runs.contract import AgentSpec, EventSink, Pause, RunOutcome, RunRequest, Transcript, Usage
from agentkeep.runs.models_factory import ModelUnavailable, open_model
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.tools.context import ToolContext
from agentkeep.tools.guarded_transport import EgressRefused

logger = structlog.get_logger("agentkeep.runs")

# What a pydantic-ai run of an agent ends with: its answer, or calls waiting for approval.
RunOutput = str | DeferredToolRequests

MAX_ERROR_CHARS = 300
REDACTED = "[redacted]"


class _Failed(Exception):
    """Ends the run early with a stop reason and a safe message."""

    def __init__(self, reason: StopReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(slots=True)
class _Progress:
    """What the loop has done so far, read again when the run fails."""

    sink: EventSink
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    transcript: Transcript = field(default_factory=Transcript)
    run: AgentRun[RunDeps, RunOutput] | None = None
    steps: int = 0
    responses_emitted: int = 0
    # Usage before this stretch of the run (a resumed run's, from before its pause).
    prior: Usage = field(default_factory=Usage)
    # Responses in the history the run started from (earlier turns, or before the pause).
    history_responses: int = 0
    # A resumed run starts on the response whose calls waited: already emitted.
    skip_response: bool = False

    async def emit(self, kind: EventKind, data: Mapping[str, JsonValue]) -> None:
        # Tool calls of one response run concurrently; the sink sees one event at a time.
        async with self.lock:
            await self.sink.emit(kind, data)

    def total_usage(self) -> Usage:
        """The run's usage, before the pause included."""
        if self.run is None:
            return Usage(self.prior.requests, self.prior.input_tokens, self.prior.output_tokens)
        used = self.run.usage
        return Usage(requests=used.requests, input_tokens=used.input_tokens, output_tokens=used.output_tokens)

    def usage(self) -> Usage:
        """This stretch's usage (what the outcome adds to the run's)."""
        total, prior = self.total_usage(), self.prior
        return Usage(
            total.requests - prior.requests,
            total.input_tokens - prior.input_tokens,
            total.output_tokens - prior.output_tokens,
        )

    async def emit_response(self, response: ModelResponse) -> None:
        self.responses_emitted += 1
        text = "".join(part.content for part in response.parts if isinstance(part, TextPart))
        data: dict[str, JsonValue] = {
            "step": self.steps_before + self.responses_emitted,
            "tool_calls": [
                {"tool": part.tool_name, "tool_call_id": part.tool_call_id, "args": _args(part)}
                for part in response.parts
                if isinstance(part, ToolCallPart)
            ],
            "usage": {
                "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
            },
        }
        if text:
            data["text"] = text
        await self.emit(EventKind.MODEL_RESPONSE, data)

    async def emit_missed_responses(self) -> None:
        """Responses the run received but never handed on (a token limit stops right after one)."""
        if self.run is None:
            return
        responses = [m for m in self.run.all_messages() if isinstance(m, ModelResponse)]
        try:
            for response in responses[self.history_responses + self.responses_emitted :]:
                await self.emit_response(response)
        except Exception as exc:  # the outcome still has to reach the driver
            logger.error("run_event_lost", error_type=type(exc).__name__)

    @property
    def steps_before(self) -> int:
        return self.prior.requests


def _args(part: ToolCallPart) -> JsonValue:
    try:
        args: JsonValue = part.args_as_dict()
    except ValueError:
        return {"raw": part.args_as_json_str()[:MAX_ERROR_CHARS]}
    return args


async def execute(
    request: RunRequest,
    sink: EventSink,
    *,
    tool_context: ToolContext | None = None,
    transcript: Transcript | None = None,
) -> RunOutcome:
    """Run the agent on `request.input` after `request.history`, emitting each step to `sink`
    and keeping `transcript` current; never raises but on cancellation."""
    progress = _Progress(sink, transcript=transcript or Transcript())
    if request.resume is not None:
        resume = request.resume
        progress.prior = Usage(resume.requests, resume.input_tokens, resume.output_tokens)
        progress.steps = resume.steps
        progress.history_responses = _responses(resume.messages)
        progress.skip_response = True
    else:
        progress.history_responses = _responses(request.history)
    limits = request.spec.limits
    try:
        if request.token_budget is not None and request.token_budget <= 0:
            raise _Failed(StopReason.BUDGET_EXCEEDED, "the organization's token budget is exhausted")
        async with asyncio.timeout(limits.timeout_seconds) as deadline:
            try:
                output = await _drive(request, progress, tool_context)
            except TimeoutError:
                if deadline.expired():
                    raise
                raise _Failed(StopReason.MODEL_ERROR, "the model request timed out") from None
    except TimeoutError:
        await progress.emit_missed_responses()
        return _failed(
            progress,
            StopReason.TIMEOUT,
            f"the run exceeded its time limit of {limits.timeout_seconds:g} seconds",
            RunStatus.TIMED_OUT,
        )
    except Exception as exc:
        await progress.emit_missed_responses()
        reason, message = _classify(exc, request, progress)
        return _failed(progress, reason, _scrub(message, request))
    if isinstance(output, DeferredToolRequests):
        return _paused(request, progress, output)
    await progress.emit(EventKind.OUTPUT, {"text": output})
    return RunOutcome(RunStatus.COMPLETED, StopReason.END_TURN, output=output, usage=progress.usage())


def _run_usage(usage: Usage) -> RunUsage:
    return RunUsage(
        requests=usage.requests, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
    )


def _responses(messages: Sequence[ModelMessage]) -> int:
    return sum(isinstance(message, ModelResponse) for message in messages)


def _paused(request: RunRequest, progress: _Progress, requests: DeferredToolRequests) -> RunOutcome:
    """The run waits for decisions on `requests.approvals` (the driver stores the pause)."""
    assert progress.run is not None
    total = progress.total_usage()
    paused = Paused(
        messages=progress.run.all_messages(),
        requests=total.requests,
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        steps=progress.steps,
    )
    calls = tuple(pending_calls(requests, agent_names(request.mcp_servers)))
    return RunOutcome(
        RunStatus.REQUIRES_ACTION, None, usage=progress.usage(), pause=Pause(paused=paused, calls=calls)
    )


@dataclass(frozen=True, slots=True)
class _Built:
    spec: AgentSpec  # held so that its id, the cache key, stays its own
    agent: Agent[RunDeps, RunOutput]
    tool_settings: Mapping[str, BaseModel]


class AgentCache:
    """pydantic-ai agents built once per agent version and reused by a runner's runs.

    An Agent holds configuration only (instructions, tools, capabilities); everything of a
    run (deps, model, messages, usage, retries) lives in the run it starts, so runs of one
    version share it, concurrently too. Keyed on the AgentSpec object: the driver keeps one
    per version for its whole life. The least recently used are dropped beyond `size`.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._built: OrderedDict[int, _Built] = OrderedDict()
        self.created = 0

    def agent_for(self, spec: AgentSpec) -> _Built:
        built = self._built.get(id(spec))
        if built is not None and built.spec is spec:
            self._built.move_to_end(id(spec))
            return built
        built = _build(spec)
        self.created += 1
        self._built[id(spec)] = built
        while len(self._built) > self.size:
            self._built.popitem(last=False)
        return built


def _build(spec: AgentSpec) -> _Built:
    tools, tool_settings = build_tools(spec.tools)
    max_context = spec.limits.max_context_tokens
    # The history processor runs before every model request (pydantic-ai's ProcessHistory).
    capabilities = (
        [ProcessHistory(context_window(max_context, spec.system_prompt or None))] if max_context else []
    )
    # Built-in tools whose policy is `always` wait for approval; MCP tools come per run.
    builtins = needing_approval(FunctionToolset(tools), builtin_approvals(spec.tools))
    agent: Agent[RunDeps, RunOutput] = Agent(
        None,
        output_type=[str, DeferredToolRequests],
        deps_type=RunDeps,
        instructions=spec.system_prompt or None,
        toolsets=[builtins],
        capabilities=capabilities,
    )
    return _Built(spec, agent, tool_settings)


async def _drive(request: RunRequest, progress: _Progress, tool_context: ToolContext | None) -> RunOutput:
    spec = request.spec
    built = request.agents.agent_for(spec) if request.agents is not None else _build(spec)
    deps = RunDeps(
        emit=progress.emit,
        tool_context=tool_context or ToolContext(run_id=request.run_id, agent_id=request.agent_id),
        settings=built.tool_settings,
    )
    model_settings = ModelSettings(
        max_tokens=spec.limits.max_output_tokens,
        timeout=request.request_timeout_seconds,
        max_retries=request.max_retries,
    )
    prior = progress.prior
    # The budget left was counted after the usage before the pause: the run's total may add it.
    budget = None if request.token_budget is None else request.token_budget + prior.total_tokens
    usage_limits = UsageLimits(
        request_limit=spec.limits.max_steps,
        output_tokens_limit=spec.limits.max_output_tokens,
        total_tokens_limit=budget,
    )
    resume = request.resume
    egress = request.mcp_egress
    toolsets = mcp_toolsets(request.mcp_servers, egress) if request.mcp_servers and egress else None
    try:
        async with (
            open_model(request, deps.tool_context.resolve, request.model_clients) as model,
            built.agent.iter(
                None if resume is not None else request.input,
                model=model,
                deps=deps,
                model_settings=model_settings,
                usage_limits=usage_limits,
                message_history=(list(resume.messages) if resume else list(request.history)) or None,
                deferred_tool_results=resume.results if resume else None,
                usage=_run_usage(prior) if resume else None,
                toolsets=toolsets,
            ) as run,
        ):
            progress.run = run
            # A thread turn's messages: those before the pause (the stored ones after the
            # thread's history), then this stretch's.
            before = list(resume.messages[len(request.history) :]) if resume else []
            try:
                return await _iterate(run, request, progress)
            finally:
                # Also on cancellation: an interrupted turn keeps what it said so far.
                progress.transcript.messages = [*before, *run.new_messages()]
    except Exception:
        if deps.crashed_tool is not None:
            raise _Failed(StopReason.TOOL_ERROR, f"tool {deps.crashed_tool} failed unexpectedly") from None
        raise


async def _iterate(run: AgentRun[RunDeps, RunOutput], request: RunRequest, progress: _Progress) -> RunOutput:
    spec = request.spec
    async for node in run:
        if Agent.is_model_request_node(node) and progress.steps < spec.limits.max_steps:
            progress.steps += 1
            await progress.emit(EventKind.MODEL_REQUEST, {"step": progress.steps})
        elif Agent.is_call_tools_node(node) and progress.skip_response:
            progress.skip_response = False  # the response whose calls waited: emitted before the pause
        elif Agent.is_call_tools_node(node):
            await progress.emit_response(node.model_response)
            if node.model_response.finish_reason == "length":
                # Cut off at max_tokens: neither a usable answer nor complete tool calls.
                raise _Failed(StopReason.MAX_TOKENS, _output_limit_message(request))
    if run.result is None:  # pragma: no cover - iteration ends at the End node
        raise RuntimeError("the agent run ended without a result")
    return run.result.output


def _classify(exc: Exception, request: RunRequest, progress: _Progress) -> tuple[StopReason, str]:
    if isinstance(exc, _Failed):
        return exc.reason, str(exc)
    if isinstance(exc, ModelUnavailable):
        return StopReason.MODEL_ERROR, str(exc)
    if isinstance(exc, UsageLimitExceeded):
        return _limit_reached(request, progress)
    if isinstance(exc, OutputTokenLimitExceeded):
        return StopReason.MAX_TOKENS, _output_limit_message(request)
    if isinstance(exc, ModelAPIError | UnexpectedModelBehavior):
        return StopReason.MODEL_ERROR, _model_error_message(exc)
    if (fault := classify(exc)) is not None:
        # The runner abandons this attempt (the outcome is not recorded): no bug to report.
        logger.warning("run_database_unavailable", run_id=str(request.run_id), fault=fault.kind)
        return StopReason.INTERNAL_ERROR, "the database became unavailable"
    logger.error(
        "run_internal_error", run_id=str(request.run_id), error_type=type(exc).__name__, exc_info=exc
    )
    return StopReason.INTERNAL_ERROR, "internal error while running the agent"


def _limit_reached(request: RunRequest, progress: _Progress) -> tuple[StopReason, str]:
    """Which limit stopped the run, read from the usage rather than from pydantic-ai's message."""
    usage, limits = progress.total_usage(), request.spec.limits
    if usage.output_tokens > limits.max_output_tokens:
        return StopReason.MAX_TOKENS, _output_limit_message(request)
    if (
        request.token_budget is not None
        and usage.total_tokens - progress.prior.total_tokens > request.token_budget
    ):
        return StopReason.BUDGET_EXCEEDED, "the organization's token budget is exhausted"
    if usage.requests >= limits.max_steps:
        return StopReason.MAX_STEPS, f"the run reached its limit of {limits.max_steps} steps"
    logger.error("run_unknown_usage_limit", run_id=str(request.run_id))
    return StopReason.INTERNAL_ERROR, "a usage limit stopped the run"


def _output_limit_message(request: RunRequest) -> str:
    return f"the run reached its limit of {request.spec.limits.max_output_tokens} output tokens"


def _model_error_message(exc: Exception) -> str:
    if isinstance(exc, ModelRequestTimeout | ModelTimeoutError):
        return "the model request timed out"
    if isinstance(exc, ModelHTTPError):
        return f"the model endpoint answered HTTP {exc.status_code}"
    if isinstance(exc, ModelConnectionError):
        refusal = _egress_refusal(exc)
        if refusal is not None:
            return f"the model endpoint was refused: {refusal}"
        return "could not connect to the model endpoint"
    if isinstance(exc, ModelAPIError):
        return f"the model request failed ({type(exc).__name__})"
    return f"unexpected model behaviour: {exc}"


def _egress_refusal(exc: BaseException) -> str | None:
    """The network guard's reason, when it is what stopped the request (the SDKs wrap it)."""
    seen: BaseException | None = exc
    for _depth in range(10):
        if seen is None:
            return None
        if isinstance(seen, EgressRefused):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _scrub(message: str, request: RunRequest) -> str:
    """A message safe to store: short, and without the endpoint's key even if a provider echoed it."""
    endpoint = request.endpoint
    if endpoint is not None and endpoint.api_key is not None:
        key = endpoint.api_key.get_secret_value()
        if key:
            message = message.replace(key, REDACTED)
    return message[:MAX_ERROR_CHARS]


def _failed(
    progress: _Progress, reason: StopReason, message: str, status: RunStatus = RunStatus.FAILED
) -> RunOutcome:
    return RunOutcome(status, reason, error=message, usage=progress.usage())
