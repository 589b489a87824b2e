"""The authorization oracle: what every operation requires, and what every role holds.

Both tables are written by hand from the documentation (the README's HTTP API table,
docs/agents.md, docs/runs.md, docs/providers.md, docs/orgs.md and the role table of
docs/SECURITY.md), never read from the routes or from agentkeep.rbac: a route guarded by the
wrong permission, or a role given a permission the docs do not promise, fails the oracle
test. docs/SECURITY.md publishes the operation table too; tests/rbac/test_operations.py
checks that copy against this one, and this one against the app's operations.

Access values: "public" (no authentication), "authenticated" (a login session; API keys are
refused), "superuser" (an instance administrator's login session), or a permission.
"""

from __future__ import annotations

import re
from pathlib import Path

PUBLIC = "public"
AUTHENTICATED = "authenticated"
SUPERUSER = "superuser"

OPERATIONS: dict[tuple[str, str], str] = {
    # Probes and metrics (docs/OPERATIONS.md; /metrics guards itself with METRICS_TOKEN).
    ("GET", "/health"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    # Accounts and sessions (README, docs/auth.md, docs/orgs.md).
    ("POST", "/auth/register"): PUBLIC,
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/auth/refresh"): PUBLIC,
    ("POST", "/auth/logout"): AUTHENTICATED,
    ("POST", "/auth/password"): AUTHENTICATED,
    ("GET", "/auth/me"): AUTHENTICATED,
    ("POST", "/auth/switch-org"): AUTHENTICATED,
    # Single sign-on (docs/sso.md).
    ("GET", "/auth/oidc/providers"): PUBLIC,
    ("GET", "/auth/oidc/{provider}/login"): PUBLIC,
    ("GET", "/auth/oidc/{provider}/callback"): PUBLIC,
    # Organizations and members (docs/orgs.md).
    ("GET", "/api/orgs"): AUTHENTICATED,
    ("POST", "/api/orgs"): AUTHENTICATED,
    ("GET", "/api/orgs/{org_id}"): "members:read",
    ("GET", "/api/orgs/{org_id}/members"): "members:read",
    ("POST", "/api/orgs/{org_id}/members"): "members:manage",
    ("PATCH", "/api/orgs/{org_id}/members/{user_id}"): "members:manage",
    ("DELETE", "/api/orgs/{org_id}/members/{user_id}"): "members:manage",
    ("PUT", "/api/orgs/{org_id}/budget"): "org:manage",
    # Model providers (docs/providers.md: all org:manage).
    ("GET", "/api/orgs/{org_id}/providers"): "org:manage",
    ("POST", "/api/orgs/{org_id}/providers"): "org:manage",
    ("GET", "/api/orgs/{org_id}/providers/{provider_id}"): "org:manage",
    ("PATCH", "/api/orgs/{org_id}/providers/{provider_id}"): "org:manage",
    ("DELETE", "/api/orgs/{org_id}/providers/{provider_id}"): "org:manage",
    # MCP tool servers (docs/mcp.md: all org:manage).
    ("GET", "/api/orgs/{org_id}/mcp-servers"): "org:manage",
    ("POST", "/api/orgs/{org_id}/mcp-servers"): "org:manage",
    ("GET", "/api/orgs/{org_id}/mcp-servers/{server_id}"): "org:manage",
    ("PATCH", "/api/orgs/{org_id}/mcp-servers/{server_id}"): "org:manage",
    ("DELETE", "/api/orgs/{org_id}/mcp-servers/{server_id}"): "org:manage",
    ("GET", "/api/orgs/{org_id}/mcp-servers/{server_id}/tools"): "org:manage",
    # Webhooks (docs/webhooks.md: all org:manage).
    ("GET", "/api/orgs/{org_id}/webhooks"): "org:manage",
    ("POST", "/api/orgs/{org_id}/webhooks"): "org:manage",
    ("GET", "/api/orgs/{org_id}/webhooks/{webhook_id}"): "org:manage",
    ("PATCH", "/api/orgs/{org_id}/webhooks/{webhook_id}"): "org:manage",
    ("DELETE", "/api/orgs/{org_id}/webhooks/{webhook_id}"): "org:manage",
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/rotate-secret"): "org:manage",
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/ping"): "org:manage",
    ("GET", "/api/orgs/{org_id}/webhooks/{webhook_id}/deliveries"): "org:manage",
    ("POST", "/api/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): "org:manage",
    # API keys (docs/orgs.md).
    ("GET", "/api/api-keys"): "apikeys:manage",
    ("POST", "/api/api-keys"): "apikeys:manage",
    ("DELETE", "/api/api-keys/{key_id}"): "apikeys:manage",
    # Instance administration (docs/orgs.md: superusers only).
    ("GET", "/api/users"): SUPERUSER,
    ("POST", "/api/users/{user_id}/disable"): SUPERUSER,
    ("POST", "/api/users/{user_id}/enable"): SUPERUSER,
    ("POST", "/api/users/{user_id}/superuser"): SUPERUSER,
    # Agents (docs/agents.md).
    ("GET", "/api/agents"): "agents:read",
    ("POST", "/api/agents"): "agents:write",
    ("GET", "/api/agents/{agent_id}"): "agents:read",
    ("PATCH", "/api/agents/{agent_id}"): "agents:write",
    ("DELETE", "/api/agents/{agent_id}"): "agents:write",
    ("GET", "/api/agents/{agent_id}/versions"): "agents:read",
    # Runs and usage (docs/runs.md).
    ("POST", "/api/agents/{agent_id}/runs"): "runs:create",
    ("GET", "/api/runs"): "runs:read",
    ("GET", "/api/runs/{run_id}"): "runs:read",
    ("POST", "/api/runs/{run_id}/cancel"): "runs:cancel",
    ("GET", "/api/runs/{run_id}/events"): "runs:read",
    # Approval of tool calls (docs/approvals.md; an agent's `approvers` may change the roles,
    # tested in tests/approvals).
    ("GET", "/api/runs/{run_id}/approvals"): "runs:read",
    ("POST", "/api/runs/{run_id}/approvals"): "runs:approve",
    ("GET", "/api/usage"): "usage:read",
    # Threads (docs/threads.md: reading needs runs:read, changing runs:create; which threads
    # a caller sees is narrowed further, tested in tests/threads).
    ("GET", "/api/threads"): "runs:read",
    ("POST", "/api/threads"): "runs:create",
    ("GET", "/api/threads/{thread_id}"): "runs:read",
    ("PATCH", "/api/threads/{thread_id}"): "runs:create",
    ("DELETE", "/api/threads/{thread_id}"): "runs:create",
    # A turn is a run started in a thread; its conversation is read like runs (docs/threads.md).
    ("POST", "/api/threads/{thread_id}/runs"): "runs:create",
    ("GET", "/api/threads/{thread_id}/messages"): "runs:read",
    # The audit trail (README: the current organization's records).
    ("GET", "/api/audit-logs"): "audit:read",
}

# Permissions no route requires: they widen what a route answers (docs/threads.md: holders of
# threads:read_all see every thread of the organization, others only their own).
WIDENING = frozenset({"threads:read_all"})

_READ = {"agents:read", "runs:read", "usage:read", "members:read"}
_WORK = _READ | {"agents:write", "runs:create", "runs:cancel", "runs:approve"}
_ADMINISTER = _WORK | {"audit:read", "members:manage", "apikeys:manage", "threads:read_all"}

# docs/SECURITY.md "Roles and permissions", restated.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": frozenset(_ADMINISTER | {"org:manage"}),
    "admin": frozenset(_ADMINISTER),
    "member": frozenset(_WORK),
    "viewer": frozenset(_READ),
    "auditor": frozenset(_READ | {"audit:read", "threads:read_all"}),
}

SECURITY_MD = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"
_CODE = re.compile(r"`([^`]+)`")


def _table_between(text: str, name: str) -> list[list[str]]:
    """The body rows of the Markdown table between `<!-- name:start -->` and `:end -->`."""
    start = text.index(f"<!-- {name}:start -->")
    end = text.index(f"<!-- {name}:end -->")
    lines = [line.strip() for line in text[start:end].splitlines()[1:] if line.strip().startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def documented_operations(text: str) -> dict[tuple[str, str], str]:
    """docs/SECURITY.md's operation table: `METHOD /path` -> `access`."""
    table: dict[tuple[str, str], str] = {}
    for operation, access, *_ in _table_between(text, "operation-table"):
        method, path = _CODE.findall(operation)[0].split(" ", 1)
        table[(method, path)] = _CODE.findall(access)[0]
    return table


def documented_role_permissions(text: str) -> dict[str, frozenset[str]]:
    """docs/SECURITY.md's role table: role -> the permissions marked "yes"."""
    start = text.index("<!-- permission-table:start -->")
    header = next(line for line in text[start:].splitlines()[1:] if line.startswith("|"))
    roles = [cell.strip() for cell in header.strip("|").split("|")][2:]
    held: dict[str, set[str]] = {role: set() for role in roles}
    for row in _table_between(text, "permission-table"):
        permission = _CODE.findall(row[0])[0]
        for role, cell in zip(roles, row[2:], strict=True):
            if cell == "yes":
                held[role].add(permission)
    return {role: frozenset(permissions) for role, permissions in held.items()}
