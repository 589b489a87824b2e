"""Building run requests and collecting the events an execution emits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import JsonValue

from agentkeep.runs.contract import AgentLimits, AgentSpec, ModelEndpoint, RunRequest
from agentkeep.runs.states import EventKind
from agentkeep.tools.registry import ToolConfig


class ListSink:
    """An `EventSink` that keeps the events in a list, in the order they were emitted."""

    def __init__(self) -> None:
        self.events: list[tuple[EventKind, dict[str, JsonValue]]] = []

    async def emit(self, kind: EventKind, data: Mapping[str, JsonValue]) -> None:
        self.events.append((kind, dict(data)))

    def kinds(self) -> list[EventKind]:
        return [kind for kind, _ in self.events]

    def of(self, kind: EventKind) -> list[dict[str, Any]]:
        return [data for event_kind, data in self.events if event_kind == kind]


def run_request(
    text: str,
    *,
    model: str = "test",
    tools: Mapping[str, Mapping[str, Any]] | None = None,
    system_prompt: str = "",
    max_steps: int = 5,
    max_output_tokens: int = 1000,
    timeout_seconds: float = 20.0,
    token_budget: int | None = None,
    endpoint: ModelEndpoint | None = None,
    request_timeout_seconds: float = 10.0,
    max_retries: int = 0,
    max_tool_errors: int = 5,
) -> RunRequest:
    spec = AgentSpec(
        model=model,
        system_prompt=system_prompt,
        tools=tuple(
            ToolConfig(name=name, settings=dict(settings)) for name, settings in (tools or {}).items()
        ),
        limits=AgentLimits(
            max_steps=max_steps,
            max_output_tokens=max_output_tokens,
            timeout_seconds=timeout_seconds,
            max_tool_errors=max_tool_errors,
        ),
    )
    return RunRequest(
        run_id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        agent_id=uuid.uuid4(),
        input=text,
        spec=spec,
        token_budget=token_budget,
        endpoint=endpoint,
        request_timeout_seconds=request_timeout_seconds,
        max_retries=max_retries,
    )


def summed_usage(sink: ListSink) -> tuple[int, int]:
    """Input and output tokens summed over the model_response events."""
    responses = sink.of(EventKind.MODEL_RESPONSE)
    return (
        sum(int(r["usage"]["input_tokens"]) for r in responses),
        sum(int(r["usage"]["output_tokens"]) for r in responses),
    )
