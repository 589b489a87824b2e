"""Group -> organization role mapping, applied at every SSO login.

An organization named in a provider's `role_mappings` is managed by that provider for the
users who sign in through it: the first mapping (in list order) whose group the user has
gives the role; none matching removes the membership. Organizations not named are untouched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from agentkeep.orgs.models import Membership
from agentkeep.orgs.repository import OrgRepository
from agentkeep.rbac.permissions import Role, permissions_of
from agentkeep.sso.repository import SsoRepository
from agentkeep.sso.settings import OidcProviderConfig

logger = structlog.get_logger("agentkeep.sso")


@dataclass(frozen=True, slots=True)
class RoleChange:
    org_id: uuid.UUID
    org_slug: str
    before: Role | None
    after: Role | None
    group: str | None

    @property
    def is_loss(self) -> bool:
        """Removed, or left with permissions it did not have all of before."""
        if self.before is None:
            return False
        if self.after is None:
            return True
        return not permissions_of(self.before) <= permissions_of(self.after)


def groups_of(claims: dict[str, Any], claim: str) -> set[str]:
    """The groups claim as a set of strings (a list, or one string, or absent)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def desired_roles(provider: OidcProviderConfig, groups: set[str]) -> dict[str, tuple[Role, str] | None]:
    """For each mapped organization slug: (role, group) of the first matching mapping, or None."""
    desired: dict[str, tuple[Role, str] | None] = {}
    for mapping in provider.role_mappings:
        desired.setdefault(mapping.org, None)
        if desired[mapping.org] is None and mapping.group in groups:
            desired[mapping.org] = (mapping.role, mapping.group)
    return desired


async def apply_role_mappings(
    sso: SsoRepository,
    orgs: OrgRepository,
    provider: OidcProviderConfig,
    user_id: uuid.UUID,
    claims: dict[str, Any],
) -> list[RoleChange]:
    """Bring the user's memberships in the mapped organizations in line with the groups."""
    desired = desired_roles(provider, groups_of(claims, provider.groups_claim))
    found = await sso.orgs_by_slug(set(desired))
    changes: list[RoleChange] = []
    for slug, wanted in desired.items():
        org = found.get(slug)
        if org is None:
            logger.warning("sso_mapping_org_missing", provider=provider.name, org=slug)
            continue
        membership = await orgs.member(org.id, user_id)
        before = Role(membership.role) if membership is not None else None
        after = wanted[0] if wanted is not None else None
        if before == after:
            continue
        if membership is None:
            assert after is not None
            await orgs.add(Membership(org_id=org.id, user_id=user_id, role=after.value))
        elif after is None:
            await orgs.delete(membership)
        else:
            membership.role = after.value
            await orgs.session.flush()
        changes.append(RoleChange(org.id, slug, before, after, wanted[1] if wanted is not None else None))
    return changes
