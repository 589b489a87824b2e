"""Imports every model so Base.metadata is complete (for Alembic and its drift check)."""

from agentkeep.agents.models import Agent, AgentVersion
from agentkeep.apikeys.models import ApiKey
from agentkeep.approvals.models import RunApproval, RunApprovalCall
from agentkeep.audit.models import AuditChainHead, AuditLog
from agentkeep.auth.models import AuthSession, RefreshToken
from agentkeep.db.base import Base
from agentkeep.idempotency.models import IdempotencyKey
from agentkeep.mcp.models import McpServer
from agentkeep.orgs.models import Membership, Organization
from agentkeep.providers.models import Provider
from agentkeep.runs.models import Run, RunEvent
from agentkeep.sso.models import OidcLoginState, UserIdentity
from agentkeep.threads.models import Thread, ThreadMessage
from agentkeep.users.models import User
from agentkeep.webhooks.models import Webhook, WebhookDelivery

__all__ = [
    "Agent",
    "AgentVersion",
    "ApiKey",
    "AuditChainHead",
    "AuditLog",
    "AuthSession",
    "Base",
    "IdempotencyKey",
    "McpServer",
    "Membership",
    "OidcLoginState",
    "Organization",
    "Provider",
    "RefreshToken",
    "Run",
    "RunApproval",
    "RunApprovalCall",
    "RunEvent",
    "Thread",
    "ThreadMessage",
    "User",
    "UserIdentity",
    "Webhook",
    "WebhookDelivery",
]
