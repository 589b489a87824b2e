"""What the run engine will ask: a configured pydantic-ai toolset for one of an organization's
MCP servers, by name.

    toolset = await server_toolset(session, secretbox, egress, org_id, "github", tools={"search"})

answers the server's `MCPToolset` (headers decrypted, every connection through the address
guard, the server's timeout), narrowed to the named tools and, when `prefix` is given, with
their names prefixed. The toolset connects when entered (or on first use inside an agent run)
and never before. Agents name these tools `mcp:<server>/<tool>`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from pydantic_ai.toolsets import AbstractToolset
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.mcp.catalog import McpServerDisabled
from agentkeep.mcp.connect import McpEgress, mcp_toolset, selected_tools
from agentkeep.mcp.repository import McpServerRepository
from agentkeep.mcp.service import McpServerNotFound, endpoint_of
from agentkeep.security.secretbox import SecretBox


async def server_toolset(
    session: AsyncSession,
    secretbox: SecretBox | None,
    egress: McpEgress,
    org_id: uuid.UUID,
    server_name: str,
    *,
    tools: Collection[str] | None = None,
    prefix: str | None = None,
    **options: Any,
) -> AbstractToolset[Any]:
    """Raises McpServerNotFound (404), McpServerDisabled (409), McpAddressRefused (422), or
    EncryptionNotConfigured / McpHeadersUnreadable (503) before any connection is made.
    `options` go to `MCPToolset` (tool_error_behavior, max_retries, ...)."""
    server = await McpServerRepository(session).named_in_org(org_id, server_name)
    if server is None:
        raise McpServerNotFound(f"No MCP server named {server_name!r} in this organization.")
    if not server.enabled:
        raise McpServerDisabled(f"MCP server {server_name!r} is disabled.", extra={"mcp_server": server_name})
    toolset = mcp_toolset(endpoint_of(secretbox, server), egress, **options)
    return selected_tools(toolset, tools, prefix)
