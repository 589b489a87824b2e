"""An agent's MCP tools inside a run: one pydantic-ai toolset per server.

The model sees each tool under a provider-safe name (`McpToolName.model_name`): providers accept
`^[A-Za-z0-9_-]{1,64}$`, and `mcp:<server>/<tool>` is not. Events, approvals and audit
records name the tool as the agent does (`mcp:<server>/<tool>`).

The tool definitions come from the server's discovered list (cached on its row when the
agent was saved), so listing tools never contacts the server: a server that is down makes
its tools fail when called, not the run. A call goes through pydantic-ai's `MCPToolset`
(the `mcp` SDK's client over the guarded HTTP client of mcp/connect.py), bounded by the
server's timeout. Whatever goes wrong in a call (the tool's own error, a timeout, a refused
or unreachable server, a protocol error) becomes a `tool_result` event with `error` and a
failed tool result the model reads (`ToolFailed`); the run goes on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import JsonValue
from pydantic_ai import RunContext
from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from pydantic_core import SchemaValidator, core_schema
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.errors import AppError
from agentkeep.mcp.connect import McpEgress, McpEndpoint, mcp_toolset
from agentkeep.mcp.repository import McpServerRepository
from agentkeep.mcp.service import endpoint_of
from agentkeep.runs.states import EventKind
from agentkeep.security.secretbox import SecretBox
from agentkeep.tools.registry import ToolConfig

logger = structlog.get_logger("agentkeep.runs")

MAX_ERROR_CHARS = 500
_ANY_ARGS = SchemaValidator(schema=core_schema.any_schema())
_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}

Emit = Callable[[EventKind, Mapping[str, JsonValue]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class McpRunTool:
    """One MCP tool an agent lists, as a run offers it."""

    agent_name: str  # mcp:<server>/<tool>
    model_name: str
    tool: str  # the name on the server
    description: str | None
    input_schema: dict[str, Any]
    needs_approval: bool


@dataclass(frozen=True, slots=True)
class McpRunServer:
    """One server's tools for a run, and how to reach it (None: why it cannot be reached)."""

    name: str
    tools: tuple[McpRunTool, ...]
    endpoint: McpEndpoint | None = field(default=None, repr=False)
    unavailable: str | None = None


async def load_mcp_servers(
    session: AsyncSession,
    secretbox: SecretBox | None,
    org_id: uuid.UUID,
    configs: Iterable[ToolConfig],
) -> tuple[McpRunServer, ...]:
    """The servers of the agent's `mcp:` tools, each with its endpoint (headers decrypted) and
    the tools' definitions from its discovered list. A server deleted, disabled or whose
    headers cannot be decrypted here still lists the tools; calling them answers why not."""
    wanted: dict[str, list[ToolConfig]] = {}
    for config in configs:
        if config.mcp is not None:
            wanted.setdefault(config.mcp.server, []).append(config)
    servers: list[McpRunServer] = []
    repository = McpServerRepository(session)
    for name, tool_configs in wanted.items():
        row = await repository.named_in_org(org_id, name)
        known = {str(tool["name"]): tool for tool in (row.tools or [])} if row is not None else {}
        tools = tuple(
            McpRunTool(
                agent_name=config.name,
                model_name=config.mcp.model_name,
                tool=config.mcp.tool,
                description=known.get(config.mcp.tool, {}).get("description"),
                input_schema=known.get(config.mcp.tool, {}).get("input_schema") or dict(_OBJECT),
                needs_approval=config.needs_approval,
            )
            for config in tool_configs
            if config.mcp is not None
        )
        endpoint, unavailable = None, None
        if row is None:
            unavailable = f"MCP server {name!r} no longer exists in this organization"
        elif not row.enabled:
            unavailable = f"MCP server {name!r} is disabled"
        else:
            try:
                endpoint = endpoint_of(secretbox, row)
            except AppError:
                unavailable = f"the headers of MCP server {name!r} cannot be decrypted by this worker"
        servers.append(McpRunServer(name, tools, endpoint, unavailable))
    return tuple(servers)


def _as_json(value: Any) -> JsonValue:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_as_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _as_json(item) for key, item in value.items()}
    return str(value)


class McpServerToolset(AbstractToolset[Any]):
    """The agent's tools of one MCP server, recorded as `tool_call` / `tool_result` events
    through the run's `ctx.deps.emit`."""

    def __init__(self, server: McpRunServer, egress: McpEgress, *, max_retries: int = 1) -> None:
        self.server = server
        self.egress = egress
        self.max_retries = max_retries
        self.by_model_name = {tool.model_name: tool for tool in server.tools}
        self._client: MCPToolset[Any] | None = None

    @property
    def id(self) -> str:
        return f"mcp:{self.server.name}"

    def _mcp(self) -> MCPToolset[Any]:
        if self._client is None:
            assert self.server.endpoint is not None
            self._client = mcp_toolset(self.server.endpoint, self.egress, tool_error_behavior="failed")
        return self._client

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        return {
            tool.model_name: ToolsetTool(
                toolset=self,
                tool_def=ToolDefinition(
                    name=tool.model_name,
                    description=tool.description or f"{tool.agent_name} (an MCP tool)",
                    parameters_json_schema=tool.input_schema,
                    metadata={"agent_name": tool.agent_name},
                ),
                max_retries=self.max_retries,
                args_validator=_ANY_ARGS,
            )
            for tool in self.server.tools
        }

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        spec = self.by_model_name[name]
        emit: Emit = ctx.deps.emit
        identity: dict[str, JsonValue] = {"tool": spec.agent_name, "tool_call_id": ctx.tool_call_id or ""}
        await emit(EventKind.TOOL_CALL, {**identity, "args": _as_json(tool_args)})
        try:
            result = _as_json(await self._call(spec, tool_args))
        except ToolFailed as exc:
            message = exc.message[:MAX_ERROR_CHARS]
            await emit(EventKind.TOOL_RESULT, {**identity, "error": message})
            raise ToolFailed(message) from None
        await emit(EventKind.TOOL_RESULT, {**identity, "result": result})
        return result

    async def _call(self, spec: McpRunTool, args: dict[str, Any]) -> Any:
        """The tool's result; every failure a ToolFailed whose message names no secret."""
        server = self.server
        if server.endpoint is None:
            raise ToolFailed(f"{spec.agent_name} cannot be called: {server.unavailable}")
        timeout = server.endpoint.timeout_seconds
        try:
            async with asyncio.timeout(timeout * 2):
                return await self._mcp().direct_call_tool(spec.tool, args)
        except ToolFailed:
            raise
        except ModelRetry as exc:
            raise ToolFailed(f"{spec.agent_name} failed: {exc.message}") from None
        except TimeoutError:
            raise ToolFailed(
                f"{spec.agent_name}: MCP server {server.name!r} did not answer in time"
            ) from None
        except AppError as exc:  # refused by the address guard before connecting
            raise ToolFailed(f"{spec.agent_name}: {exc.detail}") from None
        except Exception as exc:
            # Connection refused, reset, a refused redirect, an HTTP error status, garbage: the
            # exception text may quote URLs, never headers, but is not the model's business.
            logger.warning(
                "mcp_tool_call_failed", server=server.name, tool=spec.tool, error=type(exc).__name__
            )
            raise ToolFailed(
                f"{spec.agent_name}: could not reach MCP server {server.name!r} ({type(exc).__name__})"
            ) from None


def run_toolsets(servers: Sequence[McpRunServer], egress: McpEgress) -> list[McpServerToolset]:
    return [McpServerToolset(server, egress) for server in servers]
