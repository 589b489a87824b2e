"""Discovering a server's tools, and what a failed discovery answers.

Discovery connects through pydantic-ai's MCP client (`connect.mcp_toolset`), lists the tools,
and disconnects. Whatever goes wrong on the way (an address the guard refuses, a server that
is down, slow, or not an MCP server) becomes a problem that says which it was: 422 for a
refused address, 502 for an unreachable server or a bad answer, 504 for a timeout; never a
500, and never a header value in the answer or the log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import structlog
from fastmcp.exceptions import McpError
from pydantic_core import PydanticCustomError

from agentkeep.agents.schemas import storable_json
from agentkeep.errors import AppError
from agentkeep.mcp.connect import McpAddressRefused, McpEgress, McpEndpoint, mcp_toolset
from agentkeep.security.secret_values import redact_secret_values
from agentkeep.tools.guarded_transport import EgressRefused

logger = structlog.get_logger("agentkeep.mcp")

MAX_TOOLS = 500
MAX_TOOL_NAME = 128
MAX_DESCRIPTION = 4000
MAX_SCHEMA_BYTES = 64 * 1024
MAX_SERVER_MESSAGE = 300


class McpServerUnreachable(AppError):
    status_code = 502
    type_slug = "mcp-server-unreachable"
    title = "MCP server unreachable"


class McpServerBadAnswer(AppError):
    status_code = 502
    type_slug = "mcp-server-bad-answer"
    title = "MCP server gave a bad answer"


class McpServerTimeout(AppError):
    status_code = 504
    type_slug = "mcp-server-timeout"
    title = "MCP server timed out"


@dataclass(frozen=True, slots=True)
class DiscoveredTool:
    name: str
    description: str | None
    input_schema: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the members of exception groups."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def _server_text(message: str) -> str:
    """What the server said, fit for a problem detail: one line, bounded, no secret shapes."""
    line = " ".join(message.split())
    if len(line) > MAX_SERVER_MESSAGE:
        line = line[: MAX_SERVER_MESSAGE - 3] + "..."
    return redact_secret_values(line)


def failure_of(exc: BaseException, endpoint: McpEndpoint) -> AppError:
    """The problem a failed connection or discovery answers, from what caused it."""
    causes = list(_causes(exc))
    where = f"MCP server {endpoint.name!r}"
    for cause in causes:
        if isinstance(cause, EgressRefused) and str(cause).startswith("could not resolve"):
            return McpServerUnreachable(f"{where}: {cause}.", extra={"mcp_server": endpoint.name})
        if isinstance(cause, EgressRefused):
            return McpAddressRefused(
                f"{where}: {cause}. A private address needs MCP_ALLOWED_NETWORKS to list it.",
                extra={"mcp_server": endpoint.name},
            )
    if any(isinstance(cause, TimeoutError | httpx2.TimeoutException) for cause in causes):
        return McpServerTimeout(
            f"{where} did not answer within {endpoint.timeout_seconds:g} s.",
            extra={"mcp_server": endpoint.name},
        )
    if any(isinstance(cause, httpx2.ConnectError) for cause in causes):
        return McpServerUnreachable(
            f"Could not connect to {where} (connection refused, reset or no route); is it running?",
            extra={"mcp_server": endpoint.name},
        )
    for cause in causes:
        if isinstance(cause, httpx2.HTTPStatusError):
            return McpServerBadAnswer(
                f"{where} answered HTTP {cause.response.status_code}.",
                extra={"mcp_server": endpoint.name, "upstream_status": cause.response.status_code},
            )
    for cause in causes:
        if isinstance(cause, McpError):
            return McpServerBadAnswer(
                f"{where} did not answer as an MCP server: {_server_text(str(cause))}",
                extra={"mcp_server": endpoint.name},
            )
    return McpServerBadAnswer(
        f"{where} did not answer as an MCP server ({type(exc).__name__}).",
        extra={"mcp_server": endpoint.name},
    )


def _tool_of(raw: Any) -> DiscoveredTool:
    wire = raw.model_dump(mode="json", by_alias=True, exclude_none=True)
    name, description, schema = wire.get("name"), wire.get("description"), wire.get("inputSchema", {})
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_TOOL_NAME:
        raise ValueError("a tool without a usable name")
    if description is not None and not isinstance(description, str):
        raise ValueError(f"tool {name!r} has a description that is not text")
    if not isinstance(schema, dict):
        raise ValueError(f"tool {name!r} has an input schema that is not an object")
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise ValueError(f"the input schema of tool {name!r} exceeds {MAX_SCHEMA_BYTES // 1024} KiB")
    if description is not None and len(description) > MAX_DESCRIPTION:
        description = description[: MAX_DESCRIPTION - 3] + "..."
    tool = DiscoveredTool(name, description, schema)
    try:
        storable_json(tool.as_json())
    except PydanticCustomError:
        raise ValueError(f"tool {name!r} has text that cannot be stored (NUL or invalid Unicode)") from None
    return tool


def checked_tools(raw_tools: list[Any], endpoint: McpEndpoint) -> list[DiscoveredTool]:
    if len(raw_tools) > MAX_TOOLS:
        raise McpServerBadAnswer(
            f"MCP server {endpoint.name!r} lists {len(raw_tools)} tools; at most {MAX_TOOLS} are accepted.",
            extra={"mcp_server": endpoint.name},
        )
    try:
        tools = [_tool_of(raw) for raw in raw_tools]
    except ValueError as exc:
        raise McpServerBadAnswer(
            f"MCP server {endpoint.name!r} listed {exc}.", extra={"mcp_server": endpoint.name}
        ) from None
    if len({tool.name for tool in tools}) != len(tools):
        raise McpServerBadAnswer(
            f"MCP server {endpoint.name!r} lists two tools with the same name.",
            extra={"mcp_server": endpoint.name},
        )
    return tools


async def discover_tools(endpoint: McpEndpoint, egress: McpEgress) -> list[DiscoveredTool]:
    """Connect, list the tools, disconnect; an `AppError` problem for every failure."""
    toolset = mcp_toolset(endpoint, egress)
    try:
        # Connecting and listing are each bounded by the server's timeout.
        async with asyncio.timeout(2 * endpoint.timeout_seconds):
            raw_tools = await toolset.list_tools()
    except Exception as exc:
        failure = failure_of(exc, endpoint)
        logger.warning(
            "mcp_discovery_failed",
            mcp_server=endpoint.name,
            problem=failure.type_slug,
            causes=sorted({type(cause).__name__ for cause in _causes(exc)}),
        )
        raise failure from None
    return checked_tools(list(raw_tools), endpoint)
