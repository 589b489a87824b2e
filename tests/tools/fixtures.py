"""Fixtures for tests that let a tool fetch: a local HTTP server on loopback, a transport that
refuses anything else and records what was sent, and a resolver with canned answers.
Registered for the whole suite in tests/conftest.py (the tools and the agent-loop tests)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from agentkeep.tools.context import IPAddress, system_resolve
from tests.tools.local_server import LocalServer

LOOPBACK = {"127.0.0.1", "::1"}


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real transport, refusing anything but loopback and recording every request."""

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self.requests: list[httpx.Request] = []
        self._inner = httpx.AsyncHTTPTransport(retries=0, verify=verify)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host in LOOPBACK, f"a test tried to reach {request.url.host}"
        self.requests.append(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class RecordingResolver:
    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if self.answers is None:
            assert host == "localhost", "tests resolve only localhost through the system"
            return await system_resolve(host, port)
        return [ipaddress.ip_address(a) for a in self.answers[host]]


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    local = LocalServer()
    await local.start()
    yield local
    await local.stop()


@pytest.fixture
async def transport() -> AsyncIterator[RecordingTransport]:
    recording = RecordingTransport()
    yield recording
    await recording.aclose()
