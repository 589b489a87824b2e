"""The built-in tools as pydantic-ai tools, each call recorded as `tool_call` and `tool_result` events.

Each configured tool becomes `Tool.from_schema(...)` with its `args_model`'s JSON schema, so
the model sees exactly the argument model; the raw arguments go through `ToolSpec.call`,
which validates them (bad arguments are a `ToolError`) and runs the tool. A `ToolError` is
the tool's answer: recorded with `error` and returned to the model as a failed tool result
(`ToolFailed`), so the model reads the message and can go on. Any other exception is a bug:
recorded, logged, and raised, which fails the run with `tool_error`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import BaseModel, JsonValue
from pydantic_ai import RunContext, Tool
from pydantic_ai.exceptions import ToolFailed

from agentkeep.runs.states import EventKind
from agentkeep.tools.context import ToolContext
from agentkeep.tools.errors import ToolError
from agentkeep.tools.registry import ToolConfig, ToolSpec, get_tool

logger = structlog.get_logger("agentkeep.runs")

Emit = Callable[[EventKind, Mapping[str, JsonValue]], Awaitable[None]]
UNEXPECTED_TOOL_FAILURE = "the tool failed unexpectedly"


@dataclass(slots=True)
class RunDeps:
    """What the tool functions of one run share: the event emitter, the context, the settings."""

    emit: Emit
    tool_context: ToolContext
    settings: Mapping[str, BaseModel]
    crashed_tool: str | None = None


def as_json(value: Any) -> JsonValue:
    """`value` when it is JSON already; otherwise its text (tools return JSON; this is a guard)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    return str(value)


def as_pydantic_ai_tool(spec: ToolSpec[Any, Any]) -> Tool[RunDeps]:
    """`spec` as a pydantic-ai tool that records each call and its result."""

    async def call(ctx: RunContext[RunDeps], **raw_args: Any) -> JsonValue:
        deps = ctx.deps
        call_id = ctx.tool_call_id or ""
        identity: dict[str, JsonValue] = {"tool": spec.name, "tool_call_id": call_id}
        await deps.emit(EventKind.TOOL_CALL, {**identity, "args": as_json(raw_args)})
        try:
            result = await spec.call(raw_args, deps.settings[spec.name], deps.tool_context)
        except ToolError as exc:
            await deps.emit(EventKind.TOOL_RESULT, {**identity, "error": exc.message})
            raise ToolFailed(exc.message) from None
        except Exception as exc:
            deps.crashed_tool = spec.name
            logger.error(
                "tool_crashed",
                tool=spec.name,
                run_id=str(deps.tool_context.run_id),
                error_type=type(exc).__name__,
                exc_info=exc,
            )
            await deps.emit(EventKind.TOOL_RESULT, {**identity, "error": UNEXPECTED_TOOL_FAILURE})
            raise
        result = as_json(result)
        await deps.emit(EventKind.TOOL_RESULT, {**identity, "result": result})
        return result

    return Tool.from_schema(
        call,
        name=spec.name,
        description=spec.description,
        json_schema=spec.args_model.model_json_schema(),
        takes_ctx=True,
    )


def build_tools(configs: tuple[ToolConfig, ...]) -> tuple[list[Tool[RunDeps]], dict[str, BaseModel]]:
    """The pydantic-ai tools for an agent's configured tools, and each tool's parsed settings."""
    tools: list[Tool[RunDeps]] = []
    settings: dict[str, BaseModel] = {}
    for config in configs:
        if config.name in settings or config.mcp is not None:  # MCP tools: runs/approval_tools.py
            continue
        tools.append(as_pydantic_ai_tool(get_tool(config.name)))
        settings[config.name] = config.parsed_settings()
    return tools, settings
