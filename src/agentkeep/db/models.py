"""Imports every model so Base.metadata is complete (for Alembic and its drift check)."""

from agentkeep.apikeys.models import ApiKey
from agentkeep.audit.models import AuditChainHead, AuditLog
from agentkeep.auth.models import AuthSession, RefreshToken
from agentkeep.db.base import Base
from agentkeep.orgs.models import Membership, Organization
from agentkeep.users.models import User

__all__ = [
    "ApiKey",
    "AuditChainHead",
    "AuditLog",
    "AuthSession",
    "Base",
    "Membership",
    "Organization",
    "RefreshToken",
    "User",
]
