"""Whether an agent may name the MCP tools it lists: each `mcp:<server>/<tool>` must name an
enabled server of the organization that offers the tool (its discovered list, cached; asked
once when nothing is cached yet). Refusals name what is available instead."""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable

from fastapi import FastAPI

from agentkeep.errors import InvalidInput
from agentkeep.mcp.catalog import McpToolCatalog
from agentkeep.mcp.connect import McpEgress
from agentkeep.mcp.repository import McpServerRepository
from agentkeep.mcp.service import McpActor
from agentkeep.tools.registry import McpToolName


class McpToolUnknown(InvalidInput):
    type_slug = "mcp-tool-unknown"
    title = "Unknown MCP tool"


MAX_NAMES_LISTED = 50


def _listed(names: Iterable[str]) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:MAX_NAMES_LISTED])
    more = len(ordered) - MAX_NAMES_LISTED
    return f"{shown}, and {more} more" if more > 0 else shown or "none"


class McpToolCheck:
    def __init__(self, catalog: Callable[[], McpToolCatalog]) -> None:
        self._catalog = catalog

    @classmethod
    def of_app(cls, app: FastAPI) -> McpToolCheck:
        """The check with the app's sessions, secrets box and MCP connection policy (read only
        when an agent names MCP tools)."""
        state = app.state
        return cls(
            lambda: McpToolCatalog(
                state.sessionmaker, state.secretbox, McpEgress.from_settings(state.settings)
            )
        )

    @functools.cached_property
    def catalog(self) -> McpToolCatalog:
        return self._catalog()

    async def check(self, user_id: uuid.UUID, org_id: uuid.UUID, tools: Iterable[McpToolName]) -> None:
        """Raise McpToolUnknown (422) for a server or tool the organization does not offer;
        discovery problems (502, 503, 504) pass through as they are."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for tool in tools:
            wanted[tool.server].add(tool.tool)
        for server_name in sorted(wanted):
            async with self.catalog.sessionmaker() as session:
                repository = McpServerRepository(session)
                server = await repository.named_in_org(org_id, server_name)
                if server is None:
                    available = await repository.names_in_org(org_id)
                    raise McpToolUnknown(
                        f"No MCP server named {server_name!r} in this organization; "
                        f"registered servers: {_listed(available)}.",
                        extra={"field": "tools", "mcp_server": server_name, "available": sorted(available)},
                    )
                server_id, enabled = server.id, server.enabled
            if not enabled:
                raise McpToolUnknown(
                    f"MCP server {server_name!r} is disabled; enable it before agents use its tools.",
                    extra={"field": "tools", "mcp_server": server_name},
                )
            listing = await self.catalog.tools(McpActor(user_id, org_id), org_id, server_id, refresh=False)
            offered = {tool.name for tool in listing.tools}
            missing = sorted(wanted[server_name] - offered)
            if missing:
                raise McpToolUnknown(
                    f"MCP server {server_name!r} offers no tool {', '.join(map(repr, missing))}; "
                    f"its tools: {_listed(offered)}.",
                    extra={
                        "field": "tools",
                        "mcp_server": server_name,
                        "unknown": missing,
                        "available": sorted(offered)[:MAX_NAMES_LISTED],
                    },
                )
