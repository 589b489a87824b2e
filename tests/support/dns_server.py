"""A tiny DNS server on 127.0.0.1 answering A queries from a table, and a resolver that asks it.

Tests give a name any address (169.254.169.254, 127.0.0.1) through real DNS messages over UDP,
without touching the host's resolver configuration, and hand the resolver to the code under
test where production uses the system resolver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_address
from typing import cast

import dns.asyncresolver
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from agentkeep.tools.context import IPAddress, Resolver


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        for question in query.question:
            name = question.name.to_text(omit_final_dot=True).lower()
            self.asked.append(name)
            if name not in self.answers:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                for address in self.answers[name]:
                    response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", address))
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@asynccontextmanager
async def running_dns_server(answers: dict[str, list[str]]) -> AsyncIterator[tuple[DnsServer, Resolver]]:
    """The server, and a resolver asking only it (an unknown name fails like getaddrinfo does)."""
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: DnsServer(answers), local_addr=("127.0.0.1", 0)
    )
    client = dns.asyncresolver.Resolver(configure=False)
    client.nameservers = ["127.0.0.1"]
    client.port = int(transport.get_extra_info("sockname")[1])
    client.lifetime = 5

    async def resolve(host: str, _port: int) -> list[IPAddress]:
        try:
            answer = await client.resolve(host, "A")
        except dns.exception.DNSException as exc:
            raise OSError(f"could not resolve {host}: {exc}") from None
        return [ip_address(record.to_text()) for record in answer]

    try:
        yield server, resolve
    finally:
        transport.close()
