"""Thread tests register and log in several users from one address: lift the auth limit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentkeep.config import Settings
from tests.support.databases import REDIS_URL


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(database_url=database_url, redis_url=redis_url, rate_limit_auth="1000/minute")
