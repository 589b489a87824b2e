"""ENVIRONMENT=production refuses every relaxed safeguard, all reported at once."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from agentkeep.config import ConfigError, load_settings
from agentkeep.profile import relaxed_safeguards
from agentkeep.security.secretbox import generate_key

SECRET = secrets.token_urlsafe(48)
HARDENED: dict[str, Any] = {
    "_env_file": None,
    "jwt_secret": SECRET,
    "environment": "production",
    "database_url": "postgresql+asyncpg://agentkeep@db.internal/agentkeep",
    "redis_url": "redis://cache.internal:6379/0",
    "allowed_hosts": "agents.example.com",
    "cors_origins": "https://app.example.com",
    "trusted_proxies": "10.0.0.0/8",
    "secrets_encryption_keys": generate_key(),
    "audit_hmac_key": secrets.token_urlsafe(40),
}


def production_problems(**changes: Any) -> list[str]:
    values = {**HARDENED, **changes}
    with pytest.raises(ConfigError) as caught:
        load_settings(**values)
    return caught.value.problems


def test_a_hardened_production_configuration_starts() -> None:
    settings = load_settings(**HARDENED)
    assert relaxed_safeguards(settings) == []
    assert settings.api_docs_enabled is False


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"database_url": "sqlite+aiosqlite:///./var/x.db"}, "DATABASE_URL"),
        ({"redis_url": None}, "REDIS_URL"),
        ({"allowed_hosts": ""}, "ALLOWED_HOSTS"),
        ({"cors_origins": "http://app.example.com"}, "CORS_ORIGINS"),
        ({"access_token_ttl_seconds": 3600}, "ACCESS_TOKEN_TTL_SECONDS"),
        ({"trusted_proxies": "0.0.0.0/0"}, "TRUSTED_PROXIES"),
        ({"trusted_proxies": "10.0.0.0/8,::/0"}, "TRUSTED_PROXIES"),
        ({"secrets_encryption_keys": ""}, "SECRETS_ENCRYPTION_KEYS"),
        ({"audit_hmac_key": None}, "AUDIT_HMAC_KEY"),
    ],
)
def test_each_relaxed_safeguard_refuses_production(change: dict[str, Any], variable: str) -> None:
    (problem,) = production_problems(**change)
    assert problem.startswith(f"{variable}:")
    assert "production" in problem


def test_all_production_problems_are_reported_together() -> None:
    problems = production_problems(
        database_url="sqlite+aiosqlite:///./x.db", redis_url=None, allowed_hosts=""
    )
    assert {p.split(":", 1)[0] for p in problems} == {"DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"}


def test_development_keeps_friendly_defaults_but_names_them() -> None:
    settings = load_settings(_env_file=None, jwt_secret=SECRET)
    relaxed = {line.split(":", 1)[0] for line in relaxed_safeguards(settings)}
    assert {"DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "CORS_ORIGINS"} <= relaxed
    assert settings.api_docs_enabled is True


def test_docs_can_be_enabled_explicitly_in_production() -> None:
    assert load_settings(**HARDENED, docs_enabled=True).api_docs_enabled is True


def test_registration_is_closed_in_production_unless_opened() -> None:
    assert load_settings(**HARDENED).registration_open is False
    assert load_settings(**HARDENED, allow_registration=True).registration_open is True
    assert load_settings(_env_file=None, jwt_secret=SECRET).registration_open is True
