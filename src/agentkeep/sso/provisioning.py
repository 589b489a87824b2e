"""Who an SSO login is: the identity (issuer, subject) found, linked or provisioned.

The issuer and subject are the identity, never the email. An unknown identity becomes a new
user (just-in-time provisioning), unless an account already holds its email: that account
is linked only when OIDC_LINK_VERIFIED_EMAIL allows it, the provider says the email is
verified, and the account is not the instance administrator's (break-glass accounts stay
password accounts).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentkeep.auth.service import normalise_identifier
from agentkeep.orgs.repository import OrgRepository
from agentkeep.orgs.service import add_personal_org
from agentkeep.security.passwords import PasswordHasher
from agentkeep.sso import errors
from agentkeep.sso.models import UserIdentity
from agentkeep.sso.repository import SsoRepository
from agentkeep.sso.settings import OidcProviderConfig
from agentkeep.users.models import EMAIL_MAX, USERNAME_MAX, User

_NOT_USERNAME = re.compile(r"[^a-z0-9_.\-]+")
USERNAME_MIN = 3


@dataclass(frozen=True, slots=True)
class Resolved:
    user: User
    identity: UserIdentity
    # "existing", "provisioned" (new user) or "linked" (existing account, new identity).
    how: str


def is_verified(value: object) -> bool:
    # Some providers send the boolean as a string.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def email_of(provider: OidcProviderConfig, claims: dict[str, Any]) -> str:
    value = claims.get(provider.email_claim)
    if not isinstance(value, str) or "@" not in value or len(value) > EMAIL_MAX:
        raise errors.EmailMissing(
            f"The provider sent no usable email address (claim {provider.email_claim!r}); "
            "ask for the 'email' scope or set email_claim in OIDC_PROVIDERS."
        )
    return normalise_identifier(value)


def username_base(provider: OidcProviderConfig, claims: dict[str, Any], email: str) -> str:
    raw = claims.get(provider.username_claim)
    candidate = raw if isinstance(raw, str) else ""
    for source in (candidate.split("@")[0], email.split("@")[0]):
        name = _NOT_USERNAME.sub("-", source.strip().lower()).strip("-._")[: USERNAME_MAX - 7]
        if len(name) >= USERNAME_MIN:
            return name
    return "user"


class IdentityResolver:
    def __init__(
        self, sso: SsoRepository, orgs: OrgRepository, hasher: PasswordHasher, link_allowed: bool
    ) -> None:
        self.sso = sso
        self.orgs = orgs
        self.hasher = hasher
        self.link_allowed = link_allowed

    async def resolve(self, provider: OidcProviderConfig, claims: dict[str, Any], now: datetime) -> Resolved:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise errors.InvalidIdToken("The ID token has no subject.")
        identity = await self.sso.identity(provider.issuer, subject)
        if identity is not None:
            user = await self.sso.user(identity.user_id)
            assert user is not None  # the foreign key cascades
            email = claims.get(provider.email_claim)
            identity.email = email if isinstance(email, str) and len(email) <= EMAIL_MAX else identity.email
            identity.last_login_at = now
            return Resolved(user, identity, "existing")
        email = email_of(provider, claims)
        existing = await self.sso.user_by_email(email)
        if existing is not None:
            return await self._link(provider, claims, existing, subject, email, now)
        user = await self._new_user(provider, claims, email)
        identity = self._identity(provider, user, subject, email, now)
        await self.sso.add(identity)
        return Resolved(user, identity, "provisioned")

    async def _link(
        self,
        provider: OidcProviderConfig,
        claims: dict[str, Any],
        user: User,
        subject: str,
        email: str,
        now: datetime,
    ) -> Resolved:
        if not self.link_allowed or user.is_superuser:
            raise errors.AccountExists(
                "An account with this email already exists and is not linked to this sign-in. "
                "Sign in with it, or ask the administrator (linking needs OIDC_LINK_VERIFIED_EMAIL "
                "and a verified email; the instance administrator's account is never linked)."
            )
        if not is_verified(claims.get(provider.email_verified_claim)):
            raise errors.EmailNotVerified(
                "An account with this email exists, but the provider does not say the email is "
                "verified, so it cannot be linked. Verify the email at the provider and sign in again."
            )
        identity = self._identity(provider, user, subject, email, now)
        await self.sso.add(identity)
        return Resolved(user, identity, "linked")

    async def _new_user(self, provider: OidcProviderConfig, claims: dict[str, Any], email: str) -> User:
        base = username_base(provider, claims, email)
        username = base
        while await self.sso.username_taken(username):
            username = f"{base}-{secrets.token_hex(3)}"
        # No password anyone knows: the account signs in through its provider only.
        password_hash = await self.hasher.hash(secrets.token_urlsafe(32))
        user = User(username=username, email=email, password_hash=password_hash)
        await self.sso.add(user)
        await add_personal_org(self.orgs, user)
        return user

    @staticmethod
    def _identity(
        provider: OidcProviderConfig, user: User, subject: str, email: str, now: datetime
    ) -> UserIdentity:
        return UserIdentity(
            user_id=user.id,
            issuer=provider.issuer,
            subject=subject,
            provider=provider.name,
            email=email,
            created_at=now,
            last_login_at=now,
        )
