"""AUDIT_HMAC_KEY: optional in development, required in production, 32+ bytes of key material."""

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


@pytest.mark.parametrize(
    "key",
    [
        secrets.token_urlsafe(32),
        secrets.token_hex(32),
        secrets.token_bytes(40).hex().upper(),
        "  " + secrets.token_urlsafe(48),
    ],
    ids=["base64url-32-bytes", "hex-32-bytes", "upper-hex", "padded"],
)
def test_base64_or_hex_keys_of_32_bytes_are_accepted(key: str) -> None:
    settings = load_settings(_env_file=None, jwt_secret=JWT, audit_hmac_key=key)
    assert settings.audit_hmac_key is not None


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("short", "base64 or hex"),  # 5 characters decode to no whole byte
        (secrets.token_urlsafe(31), "at least 32"),  # 31 bytes written as 42 characters
        (secrets.token_hex(31), "at least 32"),
        ("a" * 64, "not random"),  # hex: 32 bytes, all the same
        ("0" * 64, "not random"),
        ("replace-with-output-of-agentkeep-gen-secret", "placeholder"),
        ("not base64! " * 4, "base64 or hex"),
    ],
    ids=["short", "base64-31-bytes", "hex-31-bytes", "repeated-hex", "zeros", "placeholder", "not-base64"],
)
def test_weak_keys_are_refused(key: str, rule: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, jwt_secret=JWT, audit_hmac_key=key)
    (problem,) = caught.value.problems
    assert problem.startswith("AUDIT_HMAC_KEY")
    assert rule in problem


def test_previous_keys_are_checked_redacted_and_need_a_current_key() -> None:
    current, retired = secrets.token_urlsafe(48), secrets.token_hex(32)
    settings = load_settings(
        _env_file=None, jwt_secret=JWT, audit_hmac_key=current, audit_hmac_previous_keys=f"{retired}, "
    )
    assert [key.get_secret_value() for key in settings.audit_hmac_previous_keys] == [retired]
    assert settings.redacted()["AUDIT_HMAC_PREVIOUS_KEYS"] == ["**********"]
    with pytest.raises(ConfigError, match="AUDIT_HMAC_PREVIOUS_KEYS: key 2 holds 2 bytes"):
        load_settings(
            _env_file=None, jwt_secret=JWT, audit_hmac_key=current, audit_hmac_previous_keys=f"{retired},abcd"
        )
    with pytest.raises(ConfigError, match="without AUDIT_HMAC_KEY"):
        load_settings(_env_file=None, jwt_secret=JWT, audit_hmac_previous_keys=retired)
