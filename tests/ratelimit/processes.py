"""Helpers for the tests that run real `agentkeep serve` processes against the limiter."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.processes import run_agentkeep
from tests.support.server import Server, running_server


@dataclass(frozen=True)
class Deployment:
    """Settings several instances of one deployment share (same secret: same limiter keys)."""

    env: dict[str, str]

    @classmethod
    def create(cls, **settings: str) -> Deployment:
        env = {
            "JWT_SECRET": secrets.token_urlsafe(48),
            # A fresh namespace: a shared Redis holds nothing of other runs under it.
            "REDIS_KEY_PREFIX": f"agentkeep-test-{secrets.token_hex(6)}",
            "LOG_LEVEL": "WARNING",
            **settings,
        }
        return cls(env)

    def cli(self, *args: str, cwd: Path, extra: dict[str, str] | None = None) -> None:
        """Run `agentkeep ARGS` with exactly this deployment's settings (logged for the scan)."""
        result = run_agentkeep(*args, cwd=cwd, env={**self.env, **(extra or {})}, timeout=120)
        assert result.returncode == 0, result.stderr

    @contextmanager
    def serve(self, count: int, workdir: Path) -> Iterator[list[Server]]:
        """`count` instances, one process each, on free loopback ports; migrated beforehand."""
        with ExitStack() as stack:
            servers = []
            for n in range(count):
                folder = workdir / f"instance-{n}"
                folder.mkdir(parents=True, exist_ok=True)
                servers.append(stack.enter_context(running_server(self.env, migrate=False, workdir=folder)))
            yield servers


async def spread(
    urls: Sequence[str],
    path: str,
    count: int,
    *,
    in_flight: int,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
) -> list[httpx.Response]:
    """`count` requests, the n-th to urls[n % len(urls)], at most `in_flight` at once."""
    gate = asyncio.Semaphore(in_flight)
    # One connection per request. Under this burst a reused keep-alive connection was, about
    # once in a few thousand requests, closed by the server without an answer (httpx ReadError,
    # not seen once in runs on fresh connections): that is a transport matter, not the
    # limiter's, and a request that may or may not have been counted cannot be retried.
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=0)
    # Generous: on a loaded host a request may queue for seconds behind the others.
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:

        async def one(n: int) -> httpx.Response:
            async with gate:
                url = f"{urls[n % len(urls)]}{path}"
                try:
                    return await http.request(method, url, headers=headers, data=data)
                except httpx.TransportError as exc:
                    # Which request, to which instance: to tell a server fault from a client one.
                    raise AssertionError(f"request {n} of {count} to {url}: {exc!r}") from exc

        return list(await asyncio.gather(*(one(n) for n in range(count))))
