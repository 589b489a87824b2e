"""Password rules of NIST SP 800-63B (5.1.1.2): length, blocklist, context; no composition rules."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from agentkeep.security.passwords import normalise_password

PASSWORD_MIN_LENGTH = 12
# NIST asks to allow at least 64; we allow 256 (passphrases) and stop there so a request
# cannot make the server hash megabytes.
PASSWORD_MAX_LENGTH = 256
# A password that is a short unit repeated ("aaaaaaaaaaaa", "abcabcabcabc") is guessed first.
_MAX_REPEATED_UNIT = 4


@dataclass(frozen=True, slots=True)
class PasswordProblem:
    code: str
    message: str


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (package data), lower case."""
    text = resources.files("agentkeep.security").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _is_repetition(password: str) -> bool:
    for size in range(1, _MAX_REPEATED_UNIT + 1):
        repeats = -(-len(password) // size)  # ceiling division; a partial last unit counts
        if (password[:size] * repeats)[: len(password)] == password:
            return True
    return False


def password_problems(password: str, *, username: str = "", email: str = "") -> list[PasswordProblem]:
    """Every rule `password` breaks, given the account's (normalised) username and email."""
    candidate = normalise_password(password)
    length = len(candidate)  # code points, as NIST counts
    if length < PASSWORD_MIN_LENGTH:
        return [
            PasswordProblem("too_short", f"must be at least {PASSWORD_MIN_LENGTH} characters (got {length})")
        ]
    if length > PASSWORD_MAX_LENGTH:
        return [PasswordProblem("too_long", f"must be at most {PASSWORD_MAX_LENGTH} characters")]
    problems = []
    folded = candidate.strip().casefold()
    if folded in common_passwords():
        problems.append(PasswordProblem("common", "is one of the most commonly used passwords"))
    elif _is_repetition(folded):
        problems.append(PasswordProblem("repetitive", "is a short sequence repeated"))
    context = {value.casefold() for value in (username, email, email.partition("@")[0]) if value}
    if folded in context:
        problems.append(PasswordProblem("matches_account", "must not be the username or email address"))
    return problems
