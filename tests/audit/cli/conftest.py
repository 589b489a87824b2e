"""`agentkeep audit` run as an operator would: records written under the key the CLI holds."""

from __future__ import annotations

import secrets

import pytest

from agentkeep.config import Settings
from tests.audit.attacker import cli_env, with_key

KEY = secrets.token_urlsafe(48)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The application's settings hold the key; the attacker's tools never read them."""
    return with_key(settings, KEY)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return cli_env(settings, KEY)
