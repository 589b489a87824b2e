"""Why authentication failed: one uniform answer to the client, the real reason kept for audit."""

from __future__ import annotations

import uuid
from typing import Literal

from agentkeep.errors import AppError, Forbidden, InvalidInput, Unauthorized

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}

LoginFailureReason = Literal[
    "unknown_user", "bad_password", "disabled", "locked", "not_a_member", "password_login_disabled"
]
TokenFailureReason = str


class LoginFailed(Unauthorized):
    """Wrong password, unknown user, disabled or locked account, or an `org` the user is not a
    member of: the same 401 for all five."""

    type_slug = "invalid-credentials"
    title = "Invalid credentials"

    def __init__(
        self, reason: LoginFailureReason, *, username: str, user_id: uuid.UUID | None = None
    ) -> None:
        super().__init__("Incorrect username or password.", headers=BEARER_CHALLENGE)
        self.reason: LoginFailureReason = reason
        self.username = username
        self.user_id = user_id


class InvalidAccessToken(Unauthorized):
    """Any token that does not authenticate: one body, whatever was wrong with it."""

    type_slug = "invalid-token"
    title = "Not authenticated"

    def __init__(self, reason: TokenFailureReason) -> None:
        super().__init__("Missing, invalid, expired or revoked access token.", headers=BEARER_CHALLENGE)
        self.reason = reason


class RefreshRejected(Unauthorized):
    """The refresh token is unknown, used, expired or its session is revoked.

    `family_revoked` is True when presenting it revoked the whole family (reuse of an
    already rotated token): that revocation must be committed even though the request fails.
    """

    type_slug = "invalid-refresh-token"
    title = "Invalid refresh token"

    def __init__(self, reason: str, *, family_revoked: bool = False) -> None:
        super().__init__("The refresh token is invalid, expired or revoked; log in again.")
        self.reason = reason
        self.family_revoked = family_revoked


class RegistrationClosed(Forbidden):
    type_slug = "registration-closed"
    title = "Registration is closed"


class WeakPassword(InvalidInput):
    type_slug = "weak-password"
    title = "Password refused"


class WrongCurrentPassword(Forbidden):
    type_slug = "wrong-current-password"
    title = "Current password is incorrect"


class SessionRequired(Forbidden):
    type_slug = "session-required"
    title = "A login session is required"


class NotSuperuser(Forbidden):
    title = "Administrator rights required"


__all__ = [
    "AppError",
    "InvalidAccessToken",
    "LoginFailed",
    "NotSuperuser",
    "RefreshRejected",
    "RegistrationClosed",
    "WeakPassword",
    "WrongCurrentPassword",
]
