"""The NIST SP 800-63B password rules, each on its own."""

from __future__ import annotations

import pytest

from agentkeep.security.password_policy import (
    PASSWORD_MAX_LENGTH,
    common_passwords,
    password_problems,
)


def codes(password: str, username: str = "alice", email: str = "alice@example.com") -> list[str]:
    return [problem.code for problem in password_problems(password, username=username, email=email)]


def test_eleven_characters_are_too_short_and_twelve_are_enough() -> None:
    assert codes("x7#kQ9!mZ2p") == ["too_short"]
    assert codes("x7#kQ9!mZ2pL") == []


def test_length_counts_characters_not_bytes() -> None:
    assert codes("ééééééééééé") == ["too_short"]  # 11 characters, 22 bytes
    assert codes("日本語のパスフレーズです長い") == []


def test_long_passphrases_are_allowed_up_to_the_cap() -> None:
    assert codes("a sentence that goes on " * 5) == []  # 120 characters
    assert codes("q" + "w7e" * ((PASSWORD_MAX_LENGTH - 1) // 3)) == []
    assert codes("x" * (PASSWORD_MAX_LENGTH + 1)) == ["too_long"]


def test_any_characters_are_allowed_without_composition_rules() -> None:
    assert codes("only lower case words here") == []
    assert codes("🔑🐍🌍 unicode and spaces ✓") == []


@pytest.mark.parametrize("password", ["password1234", "PASSWORD1234", "qwertyuiop123", "1q2w3e4r5t6y"])
def test_common_passwords_are_refused_in_any_case(password: str) -> None:
    assert codes(password) == ["common"]


def test_the_shipped_list_holds_thousands_of_passwords() -> None:
    assert len(common_passwords()) >= 5000
    assert "123456" in common_passwords()


@pytest.mark.parametrize("password", ["aaaaaaaaaaaa", "abcabcabcabc", "12341234123412"])
def test_a_short_unit_repeated_is_refused(password: str) -> None:
    assert codes(password) == ["repetitive"]


def test_password_equal_to_username_or_email_is_refused() -> None:
    assert codes("longusername42", username="longusername42") == ["matches_account"]
    assert codes("Alice@Example.com", email="alice@example.com") == ["matches_account"]
    assert codes("alice.smith.99", email="alice.smith.99@example.com") == ["matches_account"]
