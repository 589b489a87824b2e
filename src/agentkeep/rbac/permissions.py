"""Roles and permissions as data: the one table every authorization decision reads."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    AGENTS_READ = "agents:read"
    AGENTS_WRITE = "agents:write"
    RUNS_CREATE = "runs:create"
    RUNS_READ = "runs:read"
    RUNS_CANCEL = "runs:cancel"
    RUNS_APPROVE = "runs:approve"
    THREADS_READ_ALL = "threads:read_all"
    USAGE_READ = "usage:read"
    AUDIT_READ = "audit:read"
    MEMBERS_READ = "members:read"
    MEMBERS_MANAGE = "members:manage"
    APIKEYS_MANAGE = "apikeys:manage"
    ORG_MANAGE = "org:manage"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"
    AUDITOR = "auditor"


_READ = frozenset(
    {Permission.AGENTS_READ, Permission.RUNS_READ, Permission.MEMBERS_READ, Permission.USAGE_READ}
)
_WORK = _READ | {
    Permission.AGENTS_WRITE,
    Permission.RUNS_CREATE,
    Permission.RUNS_CANCEL,
    Permission.RUNS_APPROVE,
}
_ADMINISTER = _WORK | {
    Permission.AUDIT_READ,
    Permission.MEMBERS_MANAGE,
    Permission.APIKEYS_MANAGE,
    Permission.THREADS_READ_ALL,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(_ADMINISTER),
    Role.MEMBER: frozenset(_WORK),
    Role.VIEWER: frozenset(_READ),
    # Auditors read everything, the audit trail included, and change nothing.
    Role.AUDITOR: frozenset(_READ | {Permission.AUDIT_READ, Permission.THREADS_READ_ALL}),
}

PERMISSION_DESCRIPTIONS: dict[Permission, str] = {
    Permission.AGENTS_READ: "List and read agents",
    Permission.AGENTS_WRITE: "Create, change and archive agents",
    Permission.RUNS_CREATE: "Start runs",
    Permission.RUNS_READ: "List and read runs and their events",
    Permission.RUNS_CANCEL: "Cancel runs",
    Permission.RUNS_APPROVE: "Approve or deny the tool calls a run waits on (each agent's `approvers`)",
    Permission.THREADS_READ_ALL: "See every thread of the organization, not only one's own",
    Permission.USAGE_READ: "Read token usage and budgets",
    Permission.AUDIT_READ: "Read and export the organization's audit log",
    Permission.MEMBERS_READ: "List the organization's members",
    Permission.MEMBERS_MANAGE: "Invite members, change roles, remove members",
    Permission.APIKEYS_MANAGE: "Create, list and revoke API keys",
    Permission.ORG_MANAGE: "Change organization settings and provider credentials",
}


def permissions_of(role: Role) -> frozenset[Permission]:
    return ROLE_PERMISSIONS[role]


def role_can(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def roles_with(permission: Permission) -> tuple[Role, ...]:
    """The roles holding `permission`, in the order of `Role`."""
    return tuple(role for role in Role if role_can(role, permission))


def permission_table_markdown() -> str:
    """The role x permission table as Markdown (docs/SECURITY.md embeds it verbatim)."""
    roles = list(Role)
    header = "| Permission | Meaning | " + " | ".join(role.value for role in roles) + " |"
    rule = "|---|---|" + "|".join(":-:" for _ in roles) + "|"
    rows = [
        f"| `{permission.value}` | {PERMISSION_DESCRIPTIONS[permission]} | "
        + " | ".join("yes" if role_can(role, permission) else "" for role in roles)
        + " |"
        for permission in Permission
    ]
    return "\n".join([header, rule, *rows])
