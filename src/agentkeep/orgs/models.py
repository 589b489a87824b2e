"""Organizations (tenants) and the memberships that give users a role in them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, Timestamps, UUIDPrimaryKey, utcnow

ORG_NAME_MAX = 100
ORG_SLUG_MAX = 80
ROLE_MAX = 16


class Organization(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(ORG_NAME_MAX))
    # Personal slugs are "~<username>"; team slugs cannot contain "~", so they never collide.
    slug: Mapped[str] = mapped_column(String(ORG_SLUG_MAX), unique=True)
    is_personal: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Tokens (input + output) the organization's runs may use per calendar month (UTC);
    # None: the ORG_MONTHLY_TOKEN_BUDGET default applies (unset there too: unlimited).
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger)


class Membership(UUIDPrimaryKey, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id", name="uq_memberships_org_id_user_id"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(ROLE_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
