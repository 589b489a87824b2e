"""The grant rule: nobody hands out power they do not hold.

Every path that gives or takes power (adding a member with a role, changing a role, removing a
member, creating an API key with scopes) goes through `GrantGuard`, which compares what the
change confers with what the acting principal effectively holds now:

- a user: the permissions of their role in the organization they act in;
- an API key: its scopes intersected with its creator's current role there.

A key that creates a key also passes on its own limits: the new key expires no later than
its parent and is usable only from addresses within the parent's `allowed_cidrs` (both are
inherited when not given), so a leaked, fenced key cannot mint an unfenced one.

Granting a role or scope is allowed only when every permission it confers is held. Acting on
a member (changing their role, removing them) is allowed only when every permission of their
current role is held too, so an admin cannot demote or remove an owner, and a key scoped to
`members:manage` alone can neither add nor remove anyone. A refusal is a 403
`privilege-escalation` problem and a `privilege_escalation_denied` audit record.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from agentkeep.audit.actions import ActorType, AuditAction, AuditStatus
from agentkeep.audit.service import AuditService
from agentkeep.errors import Forbidden
from agentkeep.rbac.permissions import Permission, Role, permissions_of


class PrivilegeEscalation(Forbidden):
    type_slug = "privilege-escalation"
    title = "You cannot grant or take away permissions you do not hold"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """When and from where an API key works; keys it creates stay within them."""

    expires_at: datetime | None = None
    allowed_cidrs: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Grantor:
    """Who grants, in which organization, holding which permissions right now."""

    user_id: uuid.UUID
    org_id: uuid.UUID | None
    permissions: frozenset[Permission]
    api_key_id: uuid.UUID | None = None
    # API keys only: the acting key's own limits.
    key_limits: KeyLimits | None = None

    @property
    def actor_type(self) -> ActorType:
        return ActorType.API_KEY if self.api_key_id is not None else ActorType.USER


def _within(network: str, fences: tuple[str, ...]) -> bool:
    inner = ipaddress.ip_network(network, strict=False)
    for fence in fences:
        outer = ipaddress.ip_network(fence, strict=False)
        # mypy cannot see that equal versions make the two network types match.
        if inner.version == outer.version and inner.subnet_of(outer):  # type: ignore[arg-type]
            return True
    return False


def missing_permissions(holder: frozenset[Permission], conferred: Iterable[Permission]) -> list[str]:
    """The conferred permissions the holder lacks, sorted (empty: the grant is allowed)."""
    return sorted(permission.value for permission in set(conferred) - holder)


class GrantGuard:
    """Checks one grant at a time against the rule above; refusals are audited, then raised."""

    def __init__(self, audit: AuditService) -> None:
        self.audit = audit

    def grant_role(self, grantor: Grantor, role: Role, *, resource_id: uuid.UUID | None) -> None:
        """Giving `role` to someone (a new member, or a role change's new role)."""
        self._check(grantor, permissions_of(role), "grant_role", role.value, "membership", resource_id)

    def act_on_member(self, grantor: Grantor, role: Role, *, resource_id: uuid.UUID) -> None:
        """Demoting, changing or removing a member who holds `role` now."""
        self._check(grantor, permissions_of(role), "act_on_member", role.value, "membership", resource_id)

    def grant_scopes(self, grantor: Grantor, scopes: Iterable[Permission]) -> None:
        """Creating an API key with `scopes`."""
        requested = frozenset(scopes)
        target = ",".join(sorted(scope.value for scope in requested))
        self._check(grantor, requested, "grant_scopes", target, "api_key", None)

    def bound_key_limits(
        self, grantor: Grantor, expires_at: datetime | None, allowed_cidrs: list[str] | None
    ) -> tuple[datetime | None, list[str] | None]:
        """A new key's expiry and ranges within the creating key's own (inherited if unset)."""
        limits = grantor.key_limits
        if limits is None:
            return expires_at, allowed_cidrs
        exceeded = []
        if limits.expires_at is not None:
            if expires_at is None:
                expires_at = limits.expires_at
            elif expires_at > limits.expires_at:
                exceeded.append("expires_at")
        if limits.allowed_cidrs is not None:
            if allowed_cidrs is None:
                allowed_cidrs = list(limits.allowed_cidrs)
            elif not all(_within(network, limits.allowed_cidrs) for network in allowed_cidrs):
                exceeded.append("allowed_cidrs")
        if exceeded:
            self._refuse(
                grantor,
                "exceed_key_limits",
                ",".join(exceeded),
                "api_key",
                None,
                {"exceeded_key_limits": exceeded},
                "A key cannot create a key that lasts longer or works from more addresses than "
                "itself: " + ", ".join(exceeded) + ".",
            )
        return expires_at, allowed_cidrs

    def _check(
        self,
        grantor: Grantor,
        conferred: frozenset[Permission],
        attempt: str,
        target: str,
        resource_type: str,
        resource_id: uuid.UUID | None,
    ) -> None:
        missing = missing_permissions(grantor.permissions, conferred)
        if missing:
            self._refuse(
                grantor,
                attempt,
                target,
                resource_type,
                resource_id,
                {"missing_permissions": missing},
                "This would grant or take away permissions you do not hold: " + ", ".join(missing) + ".",
            )

    def _refuse(
        self,
        grantor: Grantor,
        attempt: str,
        target: str,
        resource_type: str,
        resource_id: uuid.UUID | None,
        reason: dict[str, list[str]],
        detail: str,
    ) -> None:
        self.audit.failure(
            AuditAction.PRIVILEGE_ESCALATION_DENIED,
            user_id=grantor.user_id,
            org_id=grantor.org_id,
            actor_type=grantor.actor_type,
            status=AuditStatus.DENIED,
            resource_type=resource_type,
            resource_id=resource_id,
            details={
                "attempt": attempt,
                "target": target,
                **reason,
                "api_key_id": str(grantor.api_key_id) if grantor.api_key_id else None,
            },
        )
        raise PrivilegeEscalation(detail, extra=reason)
