"""Organization tests register and log in many users from one address: lift the auth limit.
An encryption key lets them create objects holding secrets (webhooks)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentkeep.config import Settings
from agentkeep.security.secretbox import generate_key
from tests.support.databases import REDIS_URL

ENCRYPTION_KEY = generate_key()


@pytest.fixture
def settings(backend: str, database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    redis_url = REDIS_URL if backend == "postgres" else None
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_auth="1000/minute",
        secrets_encryption_keys=ENCRYPTION_KEY,
    )
