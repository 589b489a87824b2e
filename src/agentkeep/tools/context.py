"""What a tool call may know about the run that makes it, and the outside world it may use.

The agent loop builds one `ToolContext` per run. The clock, resolver and HTTP transport are
fields so tests (and a future egress proxy) can replace them; the defaults are the real ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


def utc_now() -> datetime:
    return datetime.now(UTC)


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` with the event loop's getaddrinfo (the system resolver, off the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # IPv6 sockaddrs may carry a scope ("fe80::1%eth0"); the scope never makes an address public.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolContext:
    """Per-run facts and capabilities handed to every tool call."""

    run_id: UUID | None = None
    agent_id: UUID | None = None
    clock: Callable[[], datetime] = utc_now
    resolve: Resolver = system_resolve
    # None: a fresh httpx transport per request. Tests pass a recording transport.
    http_transport: httpx.AsyncBaseTransport | None = field(default=None)
