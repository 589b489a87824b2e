"""How this process reaches an MCP server: through pydantic-ai's MCP client (`MCPToolset`, on
the `mcp` SDK via FastMCP's client transports), over an HTTP client whose every request passes
the netguard address policy.

- Every request, redirect hops included, goes through `GuardedTransport`: the host is resolved,
  every address must be public unless MCP_ALLOWED_NETWORKS exempts it (metadata, unspecified
  and multicast targets never), and the connection goes to a checked address (pinning).
- The configured headers are added to requests for the server's own origin only: a redirect
  to another origin never carries them.
- Plain http is accepted for a loopback host in development, and for a host the deployment
  allowlisted; everything else is https, so a header never crosses a network in clear text.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

import httpx2
from fastmcp.client.transports import ClientTransport, SSETransport, StreamableHttpTransport
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.toolsets import AbstractToolset

from agentkeep.config import Settings
from agentkeep.errors import InvalidInput
from agentkeep.tools.context import Resolver, system_resolve
from agentkeep.tools.guarded_transport import GuardedTransport
from agentkeep.tools.netguard import EgressAllowlist, normalise_host

MAX_REDIRECTS = 3


class McpAddressRefused(InvalidInput):
    type_slug = "mcp-server-address-refused"
    title = "MCP server address refused"


@dataclass(frozen=True, slots=True)
class McpEgress:
    """The deployment's policy for MCP connections: which private hosts and networks they may
    reach, how names are resolved, and whether plain http to loopback is acceptable."""

    allowlist: EgressAllowlist = field(default_factory=EgressAllowlist)
    resolve: Resolver = system_resolve
    development: bool = False
    verify: ssl.SSLContext | bool = True

    @classmethod
    def from_settings(cls, settings: Settings, resolve: Resolver = system_resolve) -> McpEgress:
        return cls(
            allowlist=EgressAllowlist.parse(settings.mcp_allowed_networks),
            resolve=resolve,
            development=settings.environment == "development",
        )

    def check_url(self, url: str) -> None:
        """Refuse, before any connection, what can be refused from the URL alone: plain http
        where it is not allowed, and an IP address the guard would refuse."""
        parsed = httpx2.URL(url)
        host = normalise_host(parsed.host)
        refusal, allowlisted = self.allowlist.check_literal(host)
        if refusal is not None:
            raise McpAddressRefused(
                f"refused: {refusal}; a private address needs MCP_ALLOWED_NETWORKS "
                "to list it (metadata addresses never).",
                extra={"field": "url"},
            )
        if parsed.scheme == "https" or allowlisted or (self.development and _is_loopback(host)):
            return
        raise McpAddressRefused(
            "url must use https (plain http is accepted only for a host MCP_ALLOWED_NETWORKS "
            "lists, or a loopback host in development).",
            extra={"field": "url"},
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class McpEndpoint:
    """One server as this process connects to it, its headers decrypted."""

    name: str
    url: str
    transport: str
    headers: Mapping[str, str]
    timeout_seconds: float

    def __repr__(self) -> str:  # the headers are secrets: never in a log line or traceback
        return f"McpEndpoint(name={self.name!r}, url={self.url!r}, transport={self.transport!r})"


def _origin(url: httpx2.URL) -> tuple[str, str, int | None]:
    default_port = 443 if url.scheme == "https" else 80
    return url.scheme, normalise_host(url.host), url.port or default_port


def guarded_client_factory(endpoint: McpEndpoint, egress: McpEgress) -> Callable[..., httpx2.AsyncClient]:
    """An `httpx_client_factory` for FastMCP's HTTP transports: each MCP session gets a client
    of its own (closed with the session) whose requests pass the address guard."""
    origin = _origin(httpx2.URL(endpoint.url))
    secret_names = [name.lower() for name in endpoint.headers]

    async def only_to_the_server(request: httpx2.Request) -> None:
        # Called for every request the client sends, each redirect hop included.
        if _origin(request.url) == origin:
            request.headers.update(endpoint.headers)
        else:
            for name in secret_names:
                request.headers.pop(name, None)

    def factory(headers: dict[str, str] | None = None, **_ignored: Any) -> httpx2.AsyncClient:
        # The transport's timeout and redirect choices are replaced by the server's own.
        return httpx2.AsyncClient(
            headers=headers,
            transport=GuardedTransport(egress.allowlist, egress.resolve, verify=egress.verify),
            timeout=httpx2.Timeout(endpoint.timeout_seconds),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            # No proxy from the environment: the guard must see (and pin) the real destination.
            trust_env=False,
            event_hooks={"request": [only_to_the_server]},
        )

    return factory


def client_transport(endpoint: McpEndpoint, egress: McpEgress) -> ClientTransport:
    factory: Any = guarded_client_factory(endpoint, egress)
    if endpoint.transport == "sse":
        return SSETransport(
            endpoint.url, httpx_client_factory=factory, sse_read_timeout=endpoint.timeout_seconds
        )
    return StreamableHttpTransport(endpoint.url, httpx_client_factory=factory)


def mcp_toolset(endpoint: McpEndpoint, egress: McpEgress, **options: Any) -> MCPToolset[Any]:
    """pydantic-ai's toolset for the server, every connection guarded. `options` go to
    `MCPToolset` (tool_error_behavior, max_retries, ...). Checks the URL against the
    policy first (`McpAddressRefused`)."""
    egress.check_url(endpoint.url)
    return MCPToolset(
        client_transport(endpoint, egress),
        id=endpoint.name,
        init_timeout=endpoint.timeout_seconds,
        read_timeout=endpoint.timeout_seconds,
        **options,
    )


def selected_tools(
    toolset: MCPToolset[Any], tools: Collection[str] | None = None, prefix: str | None = None
) -> AbstractToolset[Any]:
    """Only the named tools of the server (all of them when `tools` is None), their names
    prefixed when `prefix` is given (e.g. so two servers' `search` tools do not collide)."""
    selected: AbstractToolset[Any] = toolset
    if tools is not None:
        wanted = frozenset(tools)
        selected = selected.filtered(lambda _ctx, tool_def: tool_def.name in wanted)
    if prefix is not None:
        selected = selected.prefixed(prefix)
    return selected
