"""Approval tests: the MCP tests' real MCP servers (own processes on loopback, each demanding
a secret header, counting the calls of each tool), and an app whose runs execute in this
process on both backends (the in-process runner is a product mode); the worker-process test
starts real `agentkeep worker` processes of its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentkeep.config import Settings
from tests.mcp.conftest import ALLOWED, calc_server, encryption_key, weather_server
from tests.threads.helpers import thread_settings

__all__ = ["calc_server", "encryption_key", "weather_server"]


@pytest.fixture
def settings(
    backend: str, database_url: str, make_settings: Callable[..., Settings], encryption_key: str
) -> Settings:
    return thread_settings(
        make_settings,
        backend,
        database_url,
        secrets_encryption_keys=encryption_key,
        mcp_allowed_networks=ALLOWED,
    )
