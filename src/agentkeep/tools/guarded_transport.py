"""An HTTP transport that applies the netguard address policy to every request it sends.

Model endpoints use it (`runs/models_factory.py`): the organization's provider base URL is
checked when the model is called, after DNS resolution, and again on every redirect hop the
client follows, because each hop is a new request through this transport. Each request goes
to one of the addresses that were checked (pinning), so a second DNS answer is never used.

It is built on httpx2, the HTTP client the OpenAI SDK uses.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx2

from agentkeep.tools.context import IPAddress, Resolver
from agentkeep.tools.errors import ToolError
from agentkeep.tools.netguard import EgressAllowlist, Target, checked_addresses, parse_target, pin


class EgressRefused(httpx2.ConnectError):
    """The request's target is not a permitted address; nothing was sent."""


KEEPALIVE_EXPIRY_SECONDS = 4.0
# Connections per pool at most (shard_sizes).
SHARD_CONNECTIONS = 64


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
            [
                httpx2.Limits(
                    max_connections=size,
                    max_keepalive_connections=size,
                    keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
                )
                for size in shard_sizes(max_connections)
            ]
            if max_connections is not None
            else [
                httpx2.Limits(
                    max_connections=100,
                    max_keepalive_connections=20,
                    keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
                )
            ]
        )
        # One set of connection pools per host name: a TLS connection verified for one name is
        # never reused for another name that happens to share its address.
        self._pools: dict[str, list[_Shard]] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            target = parse_target(str(request.url))
            addresses = await checked_addresses(target, self.allowlist, False, self.resolve)
        except ToolError as exc:
            raise EgressRefused(exc.message, request=request) from None
        shards = self._pools.get(target.host)
        if shards is None:
            # One TLS context for the host's pools (the CA bundle is parsed once).
            verify = httpx2.create_ssl_context(self._verify)
            shards = self._pools[target.host] = [
                _Shard(httpx2.AsyncHTTPTransport(retries=0, verify=verify, limits=limits))
                for limits in self._limits
            ]
        shard = min(shards, key=_load) if len(shards) > 1 else shards[0]
        failure: httpx2.ConnectError | None = None
        for address in addresses:
            try:
                return await shard.send(_pinned(request, target, address))
            except httpx2.ConnectError as exc:
                failure = exc
        assert failure is not None  # checked_addresses never answers an empty list
        raise failure

    async def aclose(self) -> None:
        for shards in self._pools.values():
            for shard in shards:
                await shard.transport.aclose()
        self._pools.clear()


def shard_sizes(max_connections: int) -> list[int]:
    """`max_connections` split into pools of at most SHARD_CONNECTIONS, as even as can be.

    httpcore's pool walks all its connections (and probes each idle one's socket) whenever a
    request starts or a response ends; with one pool per host at RUN_CONCURRENCY 1,000 that
    walk was 8 % of a busy worker's CPU. Several smaller pools, each request sent through the
    least busy, keep the walk short and the total bound the same.
    """
    shards = -(-max_connections // SHARD_CONNECTIONS)
    size, extra = divmod(max_connections, shards)
    return [size + 1 if index < extra else size for index in range(shards)]


class _Shard:
    """One connection pool of a host, with the requests it is serving (sent, response not
    closed yet)."""

    def __init__(self, transport: httpx2.AsyncHTTPTransport) -> None:
        self.transport = transport
        self.in_flight = 0

    async def send(self, request: httpx2.Request) -> httpx2.Response:
        self.in_flight += 1
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException:
            self.in_flight -= 1
            raise
        stream = response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)  # an async transport's answer
        response.stream = _Counted(stream, self)
        return response


def _load(shard: _Shard) -> int:
    return shard.in_flight


class _Counted(httpx2.AsyncByteStream):
    """A response body that gives its shard's slot back when it is closed."""

    def __init__(self, stream: httpx2.AsyncByteStream, shard: _Shard) -> None:
        self._stream = stream
        self._shard: _Shard | None = shard

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._shard is not None:
            self._shard.in_flight -= 1
            self._shard = None
        await self._stream.aclose()
