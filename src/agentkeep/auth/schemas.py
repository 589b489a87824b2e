"""Request and response bodies of the /auth endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from agentkeep.security.password_policy import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from agentkeep.users.models import EMAIL_MAX, USERNAME_MAX

# Generous input bounds: the password policy then explains a too-long password itself.
PASSWORD_INPUT_MAX = 1024
LOGIN_IDENTIFIER_MAX = EMAIL_MAX
REFRESH_TOKEN_MAX = 128


USERNAME_AS_SENT = r"^\s*[A-Za-z0-9][A-Za-z0-9_.\-]*\s*$"


def _fold(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Username = Annotated[
    str,
    BeforeValidator(_fold),
    StringConstraints(min_length=3, max_length=USERNAME_MAX, pattern=r"^[a-z0-9][a-z0-9_.\-]*$"),
    # The pattern as sent: folded to lower case and stripped before it is checked.
    WithJsonSchema(
        {"type": "string", "minLength": 3, "maxLength": USERNAME_MAX, "pattern": USERNAME_AS_SENT}
    ),
]
Email = Annotated[EmailStr, BeforeValidator(_fold), Field(max_length=EMAIL_MAX)]
Password = Annotated[str, Field(min_length=1, max_length=PASSWORD_INPUT_MAX)]
# A password being chosen: the document states the policy's length bounds and `format:
# password`; the input bounds stay generous so the policy explains a refusal itself.
NewPassword = Annotated[
    str,
    Field(
        min_length=1,
        max_length=PASSWORD_INPUT_MAX,
        json_schema_extra={
            "format": "password",
            "minLength": PASSWORD_MIN_LENGTH,
            "maxLength": PASSWORD_MAX_LENGTH,
        },
    ),
]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username = Field(
        description="3-64 characters: letters, digits, '_', '.', '-'; stored in lower case."
    )
    email: Email
    password: NewPassword = Field(
        description="12 to 256 characters, not a common or repetitive password, not the username or email."
    )


class LoginForm(BaseModel):
    """The OAuth2 password grant form (RFC 6749 4.3); `username` may also be the email."""

    model_config = ConfigDict(extra="forbid")

    grant_type: Literal["password"] = "password"
    username: str = Field(min_length=1, max_length=LOGIN_IDENTIFIER_MAX)
    password: Password
    scope: str = Field(default="", max_length=1024)
    client_id: str | None = Field(default=None, max_length=256)
    client_secret: str | None = Field(default=None, max_length=256)
    org: str | None = Field(
        default=None, min_length=1, max_length=80, description="Organization id or slug (default: personal)."
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=REFRESH_TOKEN_MAX)


class PasswordChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: Password
    new_password: NewPassword


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires.")
