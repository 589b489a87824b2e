"""Audit vocabulary as data: action names, statuses and actor types.

The first five action names are the fixes report's and are kept exactly; the rest follow
the same snake_case past-tense style.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    # Authentication (names from the fixes report first).
    LOGIN_SUCCESS = "login_success"
    LOGIN_FAILED = "login_failed"
    USER_REGISTERED = "user_registered"
    REGISTER_FAILED = "register_failed"
    TOKEN_REFRESHED = "token_refreshed"  # noqa: S105 (an event name, not a secret)
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 (an event name, not a secret)
    LOGOUT = "logout"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an event name, not a secret)
    PASSWORD_CHANGE_FAILED = "password_change_failed"  # noqa: S105 (an event name, not a secret)
    ACCOUNT_LOCKED = "account_locked"
    RATE_LIMITED = "rate_limited"
    PERMISSION_DENIED = "permission_denied"
    PRIVILEGE_ESCALATION_DENIED = "privilege_escalation_denied"
    # Single sign-on (docs/sso.md).
    SSO_LOGIN_SUCCESS = "sso_login_success"
    SSO_LOGIN_FAILED = "sso_login_failed"
    SSO_USER_PROVISIONED = "sso_user_provisioned"
    ROLE_CHANGED_BY_SSO = "role_changed_by_sso"
    # Agents and runs.
    AGENT_CREATED = "agent_created"
    AGENT_UPDATED = "agent_updated"
    AGENT_DELETED = "agent_deleted"
    RUN_CREATED = "run_created"
    RUN_CANCELLED = "run_cancelled"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    # Approval of tool calls.
    TOOL_CALL_APPROVED = "tool_call_approved"
    TOOL_CALL_DENIED = "tool_call_denied"
    APPROVAL_EXPIRED = "approval_expired"
    # Threads.
    THREAD_CREATED = "thread_created"
    THREAD_DELETED = "thread_deleted"
    # API keys.
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    # Providers.
    PROVIDER_CREATED = "provider_created"
    PROVIDER_UPDATED = "provider_updated"
    PROVIDER_DELETED = "provider_deleted"
    # MCP tool servers.
    MCP_SERVER_CREATED = "mcp_server_created"
    MCP_SERVER_UPDATED = "mcp_server_updated"
    MCP_SERVER_DELETED = "mcp_server_deleted"
    # Webhooks.
    WEBHOOK_CREATED = "webhook_created"
    WEBHOOK_UPDATED = "webhook_updated"
    WEBHOOK_DELETED = "webhook_deleted"
    WEBHOOK_SECRET_ROTATED = "webhook_secret_rotated"  # noqa: S105 (an event name, not a secret)
    WEBHOOK_DISABLED = "webhook_disabled"
    # Organizations and users.
    ORG_CREATED = "org_created"
    BUDGET_CHANGED = "budget_changed"
    MEMBER_ADDED = "member_added"
    ROLE_CHANGED = "role_changed"
    MEMBER_REMOVED = "member_removed"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    SUPERUSER_GRANTED = "superuser_granted"
    SUPERUSER_REVOKED = "superuser_revoked"
    # The audit log itself.
    AUDIT_PRUNED = "audit_pruned"
    AUDIT_TAMPER_DETECTED = "audit_tamper_detected"


class AuditStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class ActorType(StrEnum):
    USER = "user"
    API_KEY = "api_key"
    SYSTEM = "system"


# Events that describe a refused or failed attempt: written in their own transaction so they
# survive the request's rollback (see service.record_failure).
FAILURE_ACTIONS = frozenset(
    {
        AuditAction.LOGIN_FAILED,
        AuditAction.SSO_LOGIN_FAILED,
        AuditAction.REGISTER_FAILED,
        AuditAction.PASSWORD_CHANGE_FAILED,
        AuditAction.REFRESH_TOKEN_REUSED,
        AuditAction.ACCOUNT_LOCKED,
        AuditAction.RATE_LIMITED,
        AuditAction.PERMISSION_DENIED,
        AuditAction.PRIVILEGE_ESCALATION_DENIED,
    }
)
