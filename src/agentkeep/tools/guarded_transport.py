"""An HTTP transport that applies the netguard address policy to every request it sends.

Model endpoints use it (`runs/models_factory.py`): the organization's provider base URL is
checked when the model is called, after DNS resolution, and again on every redirect hop the
client follows, because each hop is a new request through this transport. Each request goes
to one of the addresses that were checked (pinning), so a second DNS answer is never used.

It is built on httpx2, the HTTP client the OpenAI SDK uses.
"""

from __future__ import annotations

import ssl

import httpx2

from agentkeep.tools.context import IPAddress, Resolver
from agentkeep.tools.errors import ToolError
from agentkeep.tools.netguard import EgressAllowlist, Target, checked_addresses, parse_target, pin


class EgressRefused(httpx2.ConnectError):
    """The request's target is not a permitted address; nothing was sent."""


KEEPALIVE_EXPIRY_SECONDS = 4.0


def _pinned(request: httpx2.Request, target: Target, address: IPAddress) -> httpx2.Request:
    pinned = pin(target, address)
    extensions = dict(request.extensions)
    if pinned.sni_hostname is not None:
        extensions["sni_hostname"] = pinned.sni_hostname
    headers = request.headers.copy()
    headers["Host"] = pinned.host_header
    return httpx2.Request(
        request.method, pinned.url, headers=headers, stream=request.stream, extensions=extensions
    )


class GuardedTransport(httpx2.AsyncBaseTransport):
    """Refuses private, loopback, link-local and metadata targets unless `allowlist` exempts them."""

    def __init__(
        self,
        allowlist: EgressAllowlist,
        resolve: Resolver,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int | None = None,
    ) -> None:
        self.allowlist = allowlist
        self.resolve = resolve
        self._verify = verify
        # httpx's default pool (100 connections, 20 kept alive) unless the owner sizes it. An
        # idle connection is dropped before common servers drop theirs (uvicorn, behind vLLM
        # and LiteLLM, closes after 5 s, as httpx's default expiry): a request sent on a
        # connection the server is closing at that instant never reaches it.
        self._limits = (
            httpx2.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
            )
            if max_connections is not None
            else httpx2.Limits(
                max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS
            )
        )
        # One connection pool per host name: a TLS connection verified for one name is never
        # reused for another name that happens to share its address.
        self._pools: dict[str, httpx2.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            target = parse_target(str(request.url))
            addresses = await checked_addresses(target, self.allowlist, False, self.resolve)
        except ToolError as exc:
            raise EgressRefused(exc.message, request=request) from None
        pool = self._pools.get(target.host)
        if pool is None:
            pool = self._pools[target.host] = httpx2.AsyncHTTPTransport(
                retries=0, verify=self._verify, limits=self._limits
            )
        failure: httpx2.ConnectError | None = None
        for address in addresses:
            try:
                return await pool.handle_async_request(_pinned(request, target, address))
            except httpx2.ConnectError as exc:
                failure = exc
        assert failure is not None  # checked_addresses never answers an empty list
        raise failure

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()
