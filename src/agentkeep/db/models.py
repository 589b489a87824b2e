"""Imports every model so Base.metadata is complete (for Alembic and its drift check)."""

from agentkeep.audit.models import AuditChainHead, AuditLog
from agentkeep.auth.models import AuthSession, RefreshToken
from agentkeep.db.base import Base
from agentkeep.users.models import User

__all__ = ["AuditChainHead", "AuditLog", "AuthSession", "Base", "RefreshToken", "User"]
