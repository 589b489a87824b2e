"""AUDIT_HMAC_KEY: optional in development, required in production, strong when set."""

from __future__ import annotations

import secrets

import pytest

from agentkeep.config import ConfigError, load_settings

JWT = secrets.token_urlsafe(48)


def test_development_runs_without_a_key() -> None:
    assert load_settings(_env_file=None, jwt_secret=JWT).audit_hmac_key is None


def test_a_key_is_kept_secret() -> None:
    settings = load_settings(_env_file=None, jwt_secret=JWT, audit_hmac_key=secrets.token_urlsafe(40))
    assert settings.audit_hmac_key is not None
    assert settings.redacted()["AUDIT_HMAC_KEY"] == "**********"


@pytest.mark.parametrize(("key", "rule"), [("short", "at least 32"), ("a" * 40, "not a random key")])
def test_weak_keys_are_refused(key: str, rule: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, jwt_secret=JWT, audit_hmac_key=key)
    (problem,) = caught.value.problems
    assert problem.startswith("AUDIT_HMAC_KEY")
    assert rule in problem
