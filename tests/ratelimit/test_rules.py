"""Rules come from the environment in the `limits` notation; bad values refuse to start."""

from __future__ import annotations

import secrets

import pytest

from agentkeep.config import ConfigError, load_settings
from agentkeep.ratelimit.rules import KeyKind, RuleName, build_rules

SECRET = secrets.token_urlsafe(48)


def test_defaults() -> None:
    rules = build_rules(load_settings(_env_file=None, jwt_secret=SECRET))
    assert {name: (rule.amount, rule.window_seconds, rule.key_kind) for name, rule in rules.items()} == {
        RuleName.AUTH: (5, 60, KeyKind.CLIENT_IP),
        RuleName.LOGIN_FAILURES: (10, 900, KeyKind.ACCOUNT),
        RuleName.API: (600, 60, KeyKind.PRINCIPAL),
        RuleName.RUNS: (30, 60, KeyKind.PRINCIPAL),
    }


def test_default_lockout_keeps_well_under_nist_100_failures_an_hour() -> None:
    settings = load_settings(_env_file=None, jwt_secret=SECRET)
    rule = build_rules(settings)[RuleName.LOGIN_FAILURES]
    # Worst case: a full window of failures, then a lock, again and again.
    cycle = max(rule.window_seconds, settings.account_lockout_seconds)
    worst_per_hour = rule.amount * -(-3600 // cycle)
    assert worst_per_hour <= 50


def test_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("RATE_LIMIT_AUTH", "7 per 2 minutes")
    monkeypatch.setenv("RATE_LIMIT_RUNS", "3/second")
    rules = build_rules(load_settings(_env_file=None))
    assert (rules[RuleName.AUTH].amount, rules[RuleName.AUTH].window_seconds) == (7, 120)
    assert (rules[RuleName.RUNS].amount, rules[RuleName.RUNS].window_seconds) == (3, 1)


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("rate_limit_auth", "five a minute", "not a rate limit"),
        ("rate_limit_api", "5/minute;100/hour", "exactly one"),
        ("rate_limit_runs", "0/minute", "at least 1"),
        ("rate_limit_login_failures", "", "not a rate limit"),
    ],
)
def test_a_bad_limit_is_a_configuration_error_naming_the_variable(name: str, value: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, jwt_secret=SECRET, **{name: value})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{name.upper()}: ")
    assert hint in problem


def test_the_fallback_divisor_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("RATE_LIMIT_FALLBACK_DIVISOR", "4")
    assert load_settings(_env_file=None).rate_limit_fallback_divisor == 4


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("rate_limit_fallback_divisor", "0"),  # a share of limit/0
        ("rate_limit_fallback_divisor", "1001"),
        ("rate_limit_fallback_divisor", "two"),
        ("rate_limit_redis_timeout", "0"),
        ("rate_limit_redis_timeout", "2"),  # past the 1 s PING bound it is meant to precede
    ],
)
def test_a_bad_redis_fault_setting_is_a_configuration_error_naming_the_variable(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, jwt_secret=SECRET, **{name: value})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{name.upper()}: ")
