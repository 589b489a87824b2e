"""The model clients' connection pools (tools/guarded_transport.py): several pools per host,
each request through the least busy, and together exactly the bound the owner set
(RUN_CONCURRENCY): every run may have its one model request in flight, and no more
connections are opened than that."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from agentkeep.tools.context import system_resolve
from agentkeep.tools.guarded_transport import SHARD_CONNECTIONS, GuardedTransport, shard_sizes
from agentkeep.tools.netguard import EgressAllowlist


@pytest.mark.parametrize("bound", [1, 63, 64, 65, 130, 1000, 2000])
def test_the_pools_add_up_to_the_bound_and_none_is_larger_than_a_shard(bound: int) -> None:
    sizes = shard_sizes(bound)
    assert sum(sizes) == bound
    assert max(sizes) <= SHARD_CONNECTIONS
    assert max(sizes) - min(sizes) <= 1


async def test_the_whole_bound_is_in_flight_at_once_on_as_many_connections_and_no_more() -> None:
    """`bound` requests that the server answers only once all of them have arrived: they can
    only complete if every one got a connection at once (a request queued behind a full pool
    while another pool had room would wait forever). Ten more wait for a free connection:
    the server never sees more than `bound` connections."""
    bound = 130  # three pools (44, 43, 43)
    arrived = 0
    everyone = asyncio.Event()
    open_connections = peak = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived, open_connections, peak
        open_connections += 1
        peak = max(peak, open_connections)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                arrived += 1
                if arrived >= bound:
                    everyone.set()
                await everyone.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_connections -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=bound + 10)
    port = server.sockets[0].getsockname()[1]
    transport = GuardedTransport(EgressAllowlist.parse(["127.0.0.1"]), system_resolve, max_connections=bound)
    try:
        async with httpx2.AsyncClient(transport=transport, timeout=60) as client:
            requests = [client.get(f"http://127.0.0.1:{port}/") for _ in range(bound + 10)]
            responses = await asyncio.wait_for(asyncio.gather(*requests), timeout=60)
            assert [response.text for response in responses] == ["ok"] * (bound + 10)
            assert peak == bound
            # Every response was read and closed: no pool counts a request in flight.
            assert sum(shard.in_flight for shards in transport._pools.values() for shard in shards) == 0
    finally:
        server.close()
        await server.wait_closed()
