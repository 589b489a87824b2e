"""OIDC_PROVIDERS and the settings around it: validation, redaction, production rules."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from agentkeep.config import ConfigError, Settings, load_settings
from agentkeep.sso.client import build_clients

GOOD_SECRET = secrets.token_urlsafe(48)
CLIENT_SECRET = secrets.token_urlsafe(24)


def entry(**extra: object) -> dict[str, object]:
    return {
        "name": "corp",
        "issuer": "https://idp.example.com/realms/corp",
        "client_id": "agentkeep",
        **extra,
    }


def load(**overrides: object) -> Settings:
    return load_settings(_env_file=None, jwt_secret=GOOD_SECRET, **overrides)


def problems_for(**overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(**overrides)
    return caught.value.problems


def test_providers_are_read_as_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_PROVIDERS", json.dumps([entry(client_secret=CLIENT_SECRET)]))
    monkeypatch.setenv("PASSWORD_LOGIN_ENABLED", "false")
    settings = load()
    assert [provider.name for provider in settings.oidc_providers] == ["corp"]
    assert settings.password_login_enabled is False
    assert settings.oidc_link_verified_email is False
    assert settings.registration_open is False


def test_check_config_shows_no_client_secret() -> None:
    shown = load(oidc_providers=[entry(client_secret=CLIENT_SECRET)]).redacted()
    assert CLIENT_SECRET not in json.dumps(shown)
    assert shown["OIDC_PROVIDERS"][0]["client_secret"] == "**********"


def test_exactly_one_secret_source_is_required() -> None:
    (problem,) = problems_for(oidc_providers=[entry()])
    assert "exactly one of client_secret, client_secret_file, client_secret_env" in problem
    (problem,) = problems_for(oidc_providers=[entry(client_secret=CLIENT_SECRET, client_secret_env="X")])
    assert "exactly one" in problem


def test_a_secret_from_a_file_or_another_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    monkeypatch.setenv("CORP_OIDC_SECRET", CLIENT_SECRET)
    settings = load(
        oidc_providers=[
            entry(client_secret_file=str(secret_file)),
            entry(name="other", client_secret_env="CORP_OIDC_SECRET"),
        ]
    )
    assert [provider.secret() for provider in settings.oidc_providers] == [CLIENT_SECRET, CLIENT_SECRET]
    assert set(build_clients(settings)) == {"corp", "other"}
    problems = problems_for(oidc_providers=[entry(client_secret_env="UNSET_VARIABLE_FOR_TEST")])
    assert "UNSET_VARIABLE_FOR_TEST, which is unset" in problems[0]


def test_every_problem_is_listed_at_once() -> None:
    problems = problems_for(
        oidc_providers=[
            entry(client_secret=CLIENT_SECRET),
            entry(client_secret=CLIENT_SECRET, issuer="ftp://idp.example.com"),
        ],
    )
    assert any("issuer must be an http(s) URL" in problem for problem in problems)
    problems = problems_for(
        oidc_providers=[entry(client_secret=CLIENT_SECRET), entry(client_secret=CLIENT_SECRET)],
        allow_registration=True,
        password_login_enabled=False,
    )
    assert any("provider names must be unique (corp)" in problem for problem in problems)
    assert any(problem.startswith("ALLOW_REGISTRATION") for problem in problems)


def test_password_login_cannot_be_turned_off_without_a_provider() -> None:
    (problem,) = problems_for(password_login_enabled=False)
    assert problem.startswith("PASSWORD_LOGIN_ENABLED")


def test_scopes_must_ask_for_openid() -> None:
    problems = problems_for(oidc_providers=[entry(client_secret=CLIENT_SECRET, scopes=["email"])])
    assert any("openid" in problem for problem in problems)


def test_production_requires_https_issuers() -> None:
    problems = problems_for(
        environment="production",
        oidc_providers=[entry(client_secret=CLIENT_SECRET, issuer="http://keycloak.internal/realms/corp")],
    )
    assert any(problem.startswith("OIDC_PROVIDERS: corp: issuer not https") for problem in problems)
