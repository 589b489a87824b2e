"""Request and response bodies of /api/orgs and /auth/switch-org."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agentkeep.orgs.models import ORG_NAME_MAX, ORG_SLUG_MAX
from agentkeep.rbac.permissions import Role
from agentkeep.users.models import EMAIL_MAX

# Team slugs: lower-case letters, digits and '-'; never '~' (reserved for personal orgs).
TeamSlug = Annotated[
    str,
    StringConstraints(
        min_length=2, max_length=ORG_SLUG_MAX, pattern=r"^[a-z0-9][a-z0-9-]*$", strip_whitespace=True
    ),
]
OrgRef = Annotated[str, StringConstraints(min_length=1, max_length=ORG_SLUG_MAX, strip_whitespace=True)]


class OrgCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=ORG_NAME_MAX)
    slug: TeamSlug


class OrgRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    is_personal: bool
    created_at: datetime


class MyOrgRead(OrgRead):
    role: Role


class MyOrgList(BaseModel):
    items: list[MyOrgRead]


class MemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=EMAIL_MAX, description="An existing username or email.")
    role: Role


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class MemberRead(BaseModel):
    user_id: uuid.UUID
    username: str
    email: str
    role: Role
    created_at: datetime


class MemberList(BaseModel):
    items: list[MemberRead]


# Fits the BIGINT column.
# 2**53: the largest integer every JSON client reads exactly (a float64 cannot tell 2**63 - 1
# from 2**63), and far beyond any real monthly budget.
TOKEN_BUDGET_MAX = 2**53


class OrgBudgetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    monthly_token_budget: int | None = Field(
        ge=0,
        le=TOKEN_BUDGET_MAX,
        description="Tokens per calendar month (UTC); null: the deployment default applies.",
    )


class OrgBudgetRead(BaseModel):
    org_id: uuid.UUID
    monthly_token_budget: int | None = Field(description="The organization's own budget, if any.")
    effective_budget: int | None = Field(
        description="What applies: its own budget, else ORG_MONTHLY_TOKEN_BUDGET; null: unlimited."
    )


class SwitchOrgRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org: OrgRef = Field(description="Organization id or slug.")
