"""The shape of OIDC_PROVIDERS and its rules (pure: no I/O but reading the environment).

Each provider is named by its issuer (discovery), its client, the scopes and claim names to
use, and how its groups map to organization roles. The client secret comes from exactly one
of `client_secret`, `client_secret_file` (read when the server starts) or `client_secret_env`
(the name of another environment variable), so it never has to sit in OIDC_PROVIDERS itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agentkeep.rbac.permissions import Role

ProviderName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
ClaimName = Annotated[str, Field(min_length=1, max_length=128)]


class OidcRoleMapping(BaseModel):
    """Members of `group` (a value of the groups claim) hold `role` in organization `org` (slug)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str = Field(min_length=1, max_length=256)
    org: str = Field(min_length=1, max_length=80)
    role: Role


class OidcProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ProviderName
    display_name: str | None = Field(default=None, max_length=100)
    issuer: str = Field(min_length=1, max_length=512)
    client_id: str = Field(min_length=1, max_length=256)
    client_secret: SecretStr | None = None
    client_secret_file: str | None = None
    client_secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Where the provider sends the browser back; unset: this server's
    # /auth/oidc/{name}/callback as the request reached it. Register it at the provider.
    redirect_uri: str | None = Field(default=None, max_length=2048)
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    email_claim: ClaimName = "email"
    email_verified_claim: ClaimName = "email_verified"
    username_claim: ClaimName = "preferred_username"
    groups_claim: ClaimName = "groups"
    role_mappings: list[OidcRoleMapping] = Field(default_factory=list)
    # Losing a mapped role at login ends the user's other sessions (they log in again).
    revoke_sessions_on_role_loss: bool = False

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("issuer must be an http(s) URL (the provider's issuer identifier)")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("issuer must have no query, fragment or credentials")
        return value.strip()

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("scopes must include 'openid'")
        return value

    @model_validator(mode="after")
    def _one_secret_source(self) -> OidcProviderConfig:
        sources = [
            source
            for source in (self.client_secret, self.client_secret_file, self.client_secret_env)
            if source is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                f"provider {self.name!r}: give exactly one of client_secret, client_secret_file, "
                "client_secret_env"
            )
        if self.client_secret_env is not None and not os.environ.get(self.client_secret_env):
            raise ValueError(
                f"provider {self.name!r}: client_secret_env names {self.client_secret_env}, which is unset"
            )
        return self

    @property
    def label(self) -> str:
        return self.display_name or self.name

    def secret(self) -> str:
        """The client secret from its source (the file is read now: call at start, not per login)."""
        if self.client_secret is not None:
            return self.client_secret.get_secret_value()
        if self.client_secret_env is not None:
            return os.environ.get(self.client_secret_env, "")
        assert self.client_secret_file is not None
        return Path(self.client_secret_file).read_text(encoding="utf-8").strip()


def provider_problems(providers: list[OidcProviderConfig], *, password_login_enabled: bool) -> list[str]:
    """Rules across providers and the settings around them; one line per problem."""
    problems = []
    names = [provider.name for provider in providers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"OIDC_PROVIDERS: provider names must be unique ({', '.join(duplicates)})")
    if not password_login_enabled and not providers:
        problems.append(
            "PASSWORD_LOGIN_ENABLED: false with no OIDC_PROVIDERS would leave nobody a way to sign "
            "in; configure a provider first"
        )
    return problems


def production_problems(providers: list[OidcProviderConfig]) -> list[str]:
    plain = [provider.name for provider in providers if not provider.issuer.startswith("https://")]
    if plain:
        return [f"OIDC_PROVIDERS: {', '.join(plain)}: issuer not https; production requires https issuers"]
    return []
