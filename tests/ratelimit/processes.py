"""Helpers for the tests that run real `agentkeep serve` processes against the limiter."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from agentkeep.config import Settings
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
        """Run `agentkeep ARGS` with exactly this deployment's settings."""
        env = {key: value for key, value in os.environ.items() if key.lower() not in Settings.model_fields}
        env.update({**self.env, **(extra or {})})
        subprocess.run(
            [sys.executable, "-m", "agentkeep", *args],
            env=env,
            cwd=cwd,
            check=True,
            capture_output=True,
            timeout=120,
        )

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
    # uvicorn closes a keep-alive connection idle for 5 s; a client reusing it at that moment
    # reads a reset. Idle connections are dropped on this side well before.
    limits = httpx.Limits(
        max_connections=in_flight, max_keepalive_connections=in_flight, keepalive_expiry=1.0
    )
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
