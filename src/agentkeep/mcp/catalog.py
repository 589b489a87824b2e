"""A server's tool list, cached on its row: read from the cache, or discovered and stored.

No database connection is held while the server is asked: the row is read in one short
session, the server is asked, and the result is written in another, only if the server's
configuration did not change meanwhile (its version), so a slow server never pins a pooled
connection and a list is never stored under a URL or headers it did not come from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.errors import Conflict
from agentkeep.mcp.connect import McpEgress
from agentkeep.mcp.discovery import DiscoveredTool, discover_tools
from agentkeep.mcp.models import McpServer
from agentkeep.mcp.repository import McpServerRepository
from agentkeep.mcp.service import McpActor, McpServerNotFound, McpServerService, endpoint_of
from agentkeep.security.secretbox import SecretBox


class McpServerDisabled(Conflict):
    type_slug = "mcp-server-disabled"
    title = "MCP server disabled"


@dataclass(frozen=True, slots=True)
class ToolList:
    server_id: uuid.UUID
    discovered_at: datetime
    tools: list[DiscoveredTool]


def _cached(server: McpServer) -> ToolList | None:
    if server.tools is None or server.tools_discovered_at is None:
        return None
    tools = [DiscoveredTool(t["name"], t.get("description"), t.get("input_schema", {})) for t in server.tools]
    return ToolList(server.id, server.tools_discovered_at, tools)


class McpToolCatalog:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], secretbox: SecretBox | None, egress: McpEgress
    ) -> None:
        self.sessionmaker = sessionmaker
        self.secretbox = secretbox
        self.egress = egress

    async def tools(
        self, actor: McpActor, org_id: uuid.UUID, server_id: uuid.UUID, *, refresh: bool
    ) -> ToolList:
        """The cached list; discovered (and cached) when there is none yet or `refresh` asks."""
        org_id = McpServerService.current_org(actor, org_id)
        async with self.sessionmaker() as session:
            server = await McpServerRepository(session).get_in_org(org_id, server_id)
            if server is None:
                raise McpServerNotFound("No such MCP server.")
            cached = _cached(server)
            if cached is not None and not refresh:
                return cached
            if not server.enabled:
                raise McpServerDisabled(
                    f"MCP server {server.name!r} is disabled: enable it to discover its tools.",
                    extra={"mcp_server": server.name},
                )
            endpoint = endpoint_of(self.secretbox, server)
            version = server.version
        tools = await discover_tools(endpoint, self.egress)
        discovered_at = datetime.now(UTC)
        async with self.sessionmaker() as session, session.begin():
            # Not stored when the server changed or went meanwhile: the list is still answered.
            await McpServerRepository(session).store_tools(
                org_id, server_id, version, [tool.as_json() for tool in tools], discovered_at
            )
        return ToolList(server_id, discovered_at, tools)
