"""GET /api/usage: the current organization's token usage for a month."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agentkeep.auth.dependencies import Principal
from agentkeep.db.session import SessionDep
from agentkeep.dependencies import SettingsDep
from agentkeep.rbac.dependencies import require
from agentkeep.rbac.permissions import Permission
from agentkeep.usage.schemas import UsageQuery, UsageRead
from agentkeep.usage.service import UsageService

router = APIRouter(prefix="/api/usage", tags=["usage"])

UsageReader = Annotated[Principal, Depends(require(Permission.USAGE_READ))]


@router.get("", response_model=UsageRead)
async def read_usage(
    principal: UsageReader, query: Annotated[UsageQuery, Query()], session: SessionDep, settings: SettingsDep
) -> UsageRead:
    """Tokens used in a month (`?month=YYYY-MM`, UTC; default the current one) against the
    organization's budget, and runs and usage per agent."""
    assert principal.org_id is not None  # require(...) passed: the caller is a member there
    service = UsageService(session, settings.org_monthly_token_budget)
    return await service.month(principal.org_id, query.month)
