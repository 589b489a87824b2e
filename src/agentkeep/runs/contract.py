"""What the run executor takes and gives back: the seam between the agent loop
(`runs/executor.py`) and whoever drives it (the in-process runner or a worker).

The driver claims the run, builds a `RunRequest` from the pinned agent version, hands an
`EventSink` that appends `run_events` rows, and records the `RunOutcome`. Cancellation and
worker shutdown cancel the executing task (asyncio.CancelledError propagates out of
`execute`); the driver knows which it was and records it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import JsonValue, SecretStr
from pydantic_ai.messages import ModelMessage

from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.tools.netguard import EgressAllowlist
from agentkeep.tools.registry import ToolConfig

if TYPE_CHECKING:
    from agentkeep.approvals.pause import Paused, PendingCall, Resume
    from agentkeep.mcp.connect import McpEgress
    from agentkeep.mcp.run_tools import McpRunServer
    from agentkeep.runs.executor import AgentCache
    from agentkeep.runs.model_clients import ModelClients

# Agent versions written before approvals existed wait this long (agents.models default).
DEFAULT_APPROVAL_TIMEOUT_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class AgentLimits:
    max_steps: int
    max_output_tokens: int
    timeout_seconds: float
    # A thread's history is trimmed to this many (estimated) tokens; None: sent whole.
    max_context_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent version's configuration, as the executor needs it."""

    model: str  # "test" or "openai:<model name>"
    system_prompt: str
    tools: tuple[ToolConfig, ...]
    limits: AgentLimits
    approval_timeout_seconds: float = DEFAULT_APPROVAL_TIMEOUT_SECONDS

    @property
    def mcp_tools(self) -> tuple[ToolConfig, ...]:
        return tuple(tool for tool in self.tools if tool.mcp is not None)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AgentSpec:
        """From an `agent_versions.config` document."""
        limits = config["limits"]
        return cls(
            model=str(config["model"]),
            system_prompt=str(config.get("system_prompt") or ""),
            tools=tuple(ToolConfig.model_validate(tool) for tool in config.get("tools") or ()),
            limits=AgentLimits(
                max_steps=int(limits["max_steps"]),
                max_output_tokens=int(limits["max_output_tokens"]),
                timeout_seconds=float(limits["timeout_seconds"]),
                max_context_tokens=_optional_int(limits.get("max_context_tokens")),
            ),
            approval_timeout_seconds=float(
                config.get("approval_timeout_seconds") or DEFAULT_APPROVAL_TIMEOUT_SECONDS
            ),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class ModelEndpoint:
    """An OpenAI-compatible endpoint: the organization's provider, or the deployment's.

    Every request to it passes the netguard address policy; `allowlist` names the private
    hosts and networks it may reach (PROVIDER_ALLOWED_NETWORKS, plus the host of the
    deployment's own OPENAI_BASE_URL for the deployment endpoint).
    """

    base_url: str | None
    api_key: SecretStr | None
    allowlist: EgressAllowlist = field(default_factory=EgressAllowlist)


@dataclass(frozen=True, slots=True)
class RunRequest:
    run_id: uuid.UUID
    org_id: uuid.UUID
    agent_id: uuid.UUID
    input: str
    spec: AgentSpec
    # Tokens (input + output) this run may still use before the organization's monthly
    # budget is exhausted; None: unlimited.
    token_budget: int | None = None
    endpoint: ModelEndpoint | None = None
    request_timeout_seconds: float = 60.0
    max_retries: int = 2
    # A thread turn: the thread's earlier messages, sent before `input` (pydantic-ai objects).
    history: tuple[ModelMessage, ...] = ()
    # The runner's model clients, kept open across its runs (None: one client per run).
    model_clients: ModelClients | None = None
    # The runner's pydantic-ai agents, one per agent version (None: one built for the run).
    agents: AgentCache | None = None
    # The agent's MCP servers (endpoints with their headers decrypted) and the connection policy.
    mcp_servers: tuple[McpRunServer, ...] = ()
    mcp_egress: McpEgress | None = None
    # A run that paused for approval and whose calls are all decided: where it continues.
    resume: Resume | None = None


@dataclass(slots=True)
class Transcript:
    """The messages a run has exchanged with the model so far, kept current by the executor.

    The driver owns it and stores it with a thread turn's outcome; kept as the run goes, it
    still holds what an interrupted (cancelled) turn said.
    """

    messages: list[ModelMessage] = field(default_factory=list)


@dataclass(slots=True)
class Usage:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Pause:
    """A run that stops on tool calls waiting for approval (status `requires_action`)."""

    paused: Paused
    calls: tuple[PendingCall, ...]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    status: RunStatus
    # None only for a pause (`requires_action`): the run has not ended.
    stop_reason: StopReason | None
    output: str | None = None
    error: str | None = None
    # This attempt's usage (added to the run's).
    usage: Usage = field(default_factory=Usage)
    pause: Pause | None = None


class EventSink(Protocol):
    """Appends one event to the run's history (committed at once, so streams see it live)."""

    async def emit(self, kind: EventKind, data: Mapping[str, JsonValue]) -> None: ...
