"""Thread tests register and log in several users from one address (the auth limit is
lifted), and their turns execute in this process on both backends (the in-process runner is
a product mode), so a test sees a turn end without a worker process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentkeep.config import Settings
from tests.threads.helpers import thread_settings


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    return thread_settings(make_settings, backend, database_url)
