"""Each fail-secure configuration rule, and the one-message-for-all-problems behaviour."""

from __future__ import annotations

import secrets

import pytest

from agentkeep.config import ConfigError, load_settings

GOOD_SECRET = secrets.token_urlsafe(48)


def problems_for(**overrides: object) -> list[str]:
    values: dict[str, object] = {"_env_file": None, "jwt_secret": GOOD_SECRET}
    values.update(overrides)
    with pytest.raises(ConfigError) as caught:
        load_settings(**values)
    return caught.value.problems


def test_a_strong_secret_and_defaults_are_accepted() -> None:
    settings = load_settings(_env_file=None, jwt_secret=GOOD_SECRET)
    assert settings.cors_origins == ["http://localhost:3000"]
    assert settings.database_url == "sqlite+aiosqlite:///./var/agentkeep.db"
    assert (settings.db_pool_size, settings.db_max_overflow) == (20, 0)
    assert (settings.db_pool_timeout, settings.db_pool_recycle, settings.db_command_timeout) == (30, 3600, 30)
    assert settings.access_token_ttl_seconds == 900
    assert settings.redis_url is None


def test_missing_secret_is_refused() -> None:
    problems = problems_for(jwt_secret="")
    assert any(p.startswith("JWT_SECRET: is required") for p in problems)


def test_short_secret_names_the_32_character_rule() -> None:
    (problem,) = problems_for(jwt_secret="short")
    assert "JWT_SECRET" in problem
    assert "at least 32 characters" in problem


@pytest.mark.parametrize(
    "placeholder",
    [
        "your-secret-key-change-in-production",
        "changeme",
        "secret",
        "CHANGEME ",
        "change-me-to-a-random-string-of-at-least-32-characters",
    ],
)
def test_placeholder_secrets_are_refused(placeholder: str) -> None:
    (problem,) = problems_for(jwt_secret=placeholder)
    assert "placeholder" in problem


def test_the_env_example_secret_is_refused() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / ".env.example"
    lines = [line for line in example.read_text().splitlines() if line.startswith("JWT_SECRET=")]
    assert lines, ".env.example documents JWT_SECRET"
    value = lines[0].split("=", 1)[1]
    (problem,) = problems_for(jwt_secret=value)
    assert "placeholder" in problem


def test_long_but_repetitive_secret_is_refused() -> None:
    (problem,) = problems_for(jwt_secret="a" * 64)
    assert "distinct characters" in problem


@pytest.mark.parametrize(
    ("origins", "fragment"),
    [
        ("*", "'*' would let any web site"),
        ("http://ok.example,*", "'*'"),
        ("localhost:3000", "not an origin"),
        ("ftp://files.example", "not an origin"),
        ("https://app.example/path", "not an origin"),
    ],
)
def test_unsafe_or_malformed_cors_origins_are_refused(origins: str, fragment: str) -> None:
    (problem,) = problems_for(cors_origins=origins)
    assert problem.startswith("CORS_ORIGINS:")
    assert fragment in problem


def test_cors_origins_are_split_on_commas() -> None:
    settings = load_settings(
        _env_file=None, jwt_secret=GOOD_SECRET, cors_origins=" https://a.example , http://b.example:8080/ "
    )
    assert settings.cors_origins == ["https://a.example", "http://b.example:8080"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("db_pool_size", 0),
        ("db_pool_size", -1),
        ("db_max_overflow", -5),
        ("db_pool_timeout", 0),
        ("db_pool_recycle", 1),
        ("db_command_timeout", 0),
        ("db_pool_size", "many"),
    ],
)
def test_pool_settings_must_be_positive_and_sane(name: str, value: object) -> None:
    (problem,) = problems_for(**{name: value})
    assert problem.startswith(name.upper() + ":")


@pytest.mark.parametrize("value", [0, -1, 10_001, "many"])
def test_max_requests_in_flight_is_a_positive_bound(value: object) -> None:
    (problem,) = problems_for(max_requests_in_flight=value)
    assert problem.startswith("MAX_REQUESTS_IN_FLIGHT:")


def test_overflow_far_beyond_pool_is_refused() -> None:
    (problem,) = problems_for(db_pool_size=2, db_max_overflow=100)
    assert "DB_MAX_OVERFLOW" in problem


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "not a url", "postgresql+asyncpg:///nohost", "postgresql://h", "sqlite+aiosqlite://"],
)
def test_malformed_or_unsupported_database_urls_are_refused(url: str) -> None:
    (problem,) = problems_for(database_url=url)
    assert problem.startswith("DATABASE_URL:")


def test_plain_driver_names_map_to_the_async_drivers() -> None:
    pg = load_settings(_env_file=None, jwt_secret=GOOD_SECRET, database_url="postgresql://u:p@db:5432/app")
    assert pg.database_url == "postgresql+asyncpg://u:p@db:5432/app"
    lite = load_settings(_env_file=None, jwt_secret=GOOD_SECRET, database_url="sqlite:///./x.db")
    assert lite.database_url == "sqlite+aiosqlite:///./x.db"


@pytest.mark.parametrize("url", ["http://cache:6379", "redis://", "redis://cache:notaport"])
def test_malformed_redis_urls_are_refused(url: str) -> None:
    (problem,) = problems_for(redis_url=url)
    assert problem.startswith("REDIS_URL:")


def test_empty_redis_url_means_in_process() -> None:
    assert load_settings(_env_file=None, jwt_secret=GOOD_SECRET, redis_url="").redis_url is None


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_for(jwt_secret="short", cors_origins="*", database_url="mysql://x/y", db_pool_size=0)
    named = {p.split(":", 1)[0] for p in problems}
    assert named == {"JWT_SECRET", "CORS_ORIGINS", "DATABASE_URL", "DB_POOL_SIZE"}
    message = ConfigError(problems).render()
    assert message.count("\n  - ") == 4


def test_redacted_view_hides_every_secret() -> None:
    settings = load_settings(
        _env_file=None,
        jwt_secret=GOOD_SECRET,
        database_url="postgresql://user:dbpass123@db/app",
        redis_url="redis://:redispass123@cache:6379/0",
        openai_api_key="sk-live-abcdef",
    )
    shown = repr(settings.redacted())
    for secret in (GOOD_SECRET, "dbpass123", "redispass123", "sk-live-abcdef"):
        assert secret not in shown
    assert settings.redacted()["JWT_SECRET"] == "**********"


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", GOOD_SECRET)
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("DB_POOL_SIZE", "7")
    settings = load_settings(_env_file=None)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.db_pool_size == 7


def test_trusted_proxies_must_be_addresses_or_cidrs() -> None:
    (problem,) = problems_for(trusted_proxies="10.0.0.0/8,proxy.internal")
    assert problem.startswith("TRUSTED_PROXIES:")
    assert "proxy.internal" in problem


def test_provider_allowed_networks_take_cidrs_addresses_and_host_names() -> None:
    settings = load_settings(
        _env_file=None,
        jwt_secret=GOOD_SECRET,
        provider_allowed_networks="10.0.0.0/8, 192.168.1.7,vllm.internal",
    )
    assert settings.provider_allowed_networks == ["10.0.0.0/8", "192.168.1.7", "vllm.internal"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("10.0.0.1/8", "not a CIDR range"),
        ("https://vllm.internal", "nor a host name"),
        ("metadata.google.internal", "can never be allowed"),
        ("169.254.169.254", "can never be allowed"),
    ],
)
def test_malformed_or_metadata_provider_allowlist_entries_are_refused(value: str, fragment: str) -> None:
    (problem,) = problems_for(provider_allowed_networks=value)
    assert problem.startswith("PROVIDER_ALLOWED_NETWORKS:")
    assert fragment in problem
