"""SSO identities (issuer + subject -> user) and the pending logins between redirect and callback."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, UUIDPrimaryKey, utcnow
from agentkeep.users.models import EMAIL_MAX

ISSUER_MAX = 512
SUBJECT_MAX = 255
PROVIDER_MAX = 32
HASH_LENGTH = 64
NONCE_MAX = 128
VERIFIER_MAX = 128
REDIRECT_URI_MAX = 2048
ORG_REF_MAX = 80


class UserIdentity(UUIDPrimaryKey, Base):
    """The provider's account (issuer, subject) that signs in as `user_id`; never the email."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_user_identities_issuer_subject"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(ISSUER_MAX))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))
    provider: Mapped[str] = mapped_column(String(PROVIDER_MAX))
    # The email the provider last asserted (informational: never used to find the user).
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime] = mapped_column(default=utcnow)


class OidcLoginState(UUIDPrimaryKey, Base):
    """One login between the redirect to the provider and its callback: single use, short-lived.

    The state and the browser binding (a cookie) are stored as SHA-256 hashes; the nonce and
    the PKCE verifier are what the callback needs to check the provider's answer.
    """

    __tablename__ = "oidc_login_states"

    state_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    provider: Mapped[str] = mapped_column(String(PROVIDER_MAX))
    nonce: Mapped[str] = mapped_column(String(NONCE_MAX))
    code_verifier: Mapped[str] = mapped_column(String(VERIFIER_MAX))
    redirect_uri: Mapped[str] = mapped_column(String(REDIRECT_URI_MAX))
    org: Mapped[str | None] = mapped_column(String(ORG_REF_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
