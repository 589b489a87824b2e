"""MCP tests: two real MCP servers (the `mcp` SDK's server side, Streamable HTTP and SSE) in
processes of their own on loopback, each demanding a secret header; an app with an encryption
key and MCP_ALLOWED_NETWORKS admitting 127.0.0.1 only (not the name localhost, not 127.0.0.2)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agentkeep.config import Settings
from agentkeep.security.secretbox import generate_key
from tests.support.databases import REDIS_URL
from tests.support.processes import clean_environment, process_log
from tests.support.throwaway import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
ALLOWED = "127.0.0.1"


def header_secret() -> str:
    """A credential in the shape the suite-wide secret scan finds anywhere it leaks to."""
    return f"sk-test-{secrets.token_urlsafe(30)}"


@dataclass
class McpTestServer:
    port: int
    header_name: str
    header_value: str
    process: subprocess.Popen[bytes]

    def url(self, path: str = "/mcp", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = httpx.get(self.url("/stats"), timeout=5).json()
        return counts


def _start(toolbox: str, header_name: str, header_value: str) -> McpTestServer:
    port = free_port()
    with process_log(f"mcp-server-{toolbox}").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.mcp.mcp_server",
                "--port",
                str(port),
                "--toolbox",
                toolbox,
                "--header",
                f"{header_name}={header_value}",
            ],
            cwd=REPOSITORY,
            env=clean_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = McpTestServer(port, header_name, header_value, process)
    deadline = time.monotonic() + 60  # a loaded host can take long to import and start
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {toolbox} MCP server exited with {process.returncode}")
        try:
            server.stats()
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the {toolbox} MCP server did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def calc_server() -> Iterator[McpTestServer]:
    """Tools add, multiply and explode; every request must carry `Authorization: Bearer <secret>`."""
    server = _start("calc", "Authorization", f"Bearer {header_secret()}")
    yield server
    _stop(server.process)


@pytest.fixture(scope="session")
def weather_server() -> Iterator[McpTestServer]:
    """Tool forecast; every request must carry `X-Api-Key: <secret>`."""
    server = _start("weather", "X-Api-Key", header_secret())
    yield server
    _stop(server.process)


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return generate_key()


@pytest.fixture
def settings(
    backend: str, database_url: str, make_settings: Callable[..., Settings], encryption_key: str
) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_auth="1000/minute",
        secrets_encryption_keys=encryption_key,
        mcp_allowed_networks=ALLOWED,
    )
