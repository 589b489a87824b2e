"""Budget and usage of the organization per agent for a month, as GET /api/usage computes
it (UsageService, `usage:read`), drawn as a server-rendered SVG bar chart with the same
figures in a table beside it (the chart is an image to assistive technology; the table is
the accessible form). The owner sets the monthly budget here (OrgService.set_budget, as
PUT /api/orgs/{org_id}/budget)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Query, Request
from starlette.responses import Response

from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import page_permission
from agentkeep.console.pages.org import org_page
from agentkeep.console.route import console_router
from agentkeep.console.templating import redirect
from agentkeep.db.session import SessionDep
from agentkeep.dependencies import SettingsDep
from agentkeep.orgs.router import OrgServiceDep
from agentkeep.orgs.schemas import OrgBudgetUpdate
from agentkeep.rbac.permissions import Permission
from agentkeep.usage.schemas import UsageQuery, UsageRead
from agentkeep.usage.service import UsageService

router = console_router()

UsageReader = Annotated[Principal, Depends(page_permission(Permission.USAGE_READ))]
OrgManager = Annotated[Principal, Depends(page_permission(Permission.ORG_MANAGE))]

# Chart geometry, in SVG user units (the SVG scales to the page width).
CHART_WIDTH = 640
LABEL_WIDTH = 160
BAR_HEIGHT = 22
BAR_GAP = 10
BAR_SPACE = CHART_WIDTH - LABEL_WIDTH - 90


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    y: int
    input_width: int
    output_width: int
    total: int


@dataclass(frozen=True, slots=True)
class Chart:
    height: int
    bars: list[Bar]
    budget_x: int | None  # where the month's budget lies on the same scale, if drawn
    scale: int  # tokens at the full bar width


def _width(tokens: int, scale: int) -> int:
    return round(BAR_SPACE * tokens / scale) if scale else 0


def usage_chart(usage: UsageRead) -> Chart:
    """Bars of input and output tokens per agent; the organization's total and the budget
    (when set) first, on one scale, so the budget line shows how much of it is used."""
    rows = [
        ("All agents", sum(a.input_tokens for a in usage.agents), sum(a.output_tokens for a in usage.agents))
    ]
    rows += [(agent.agent_name, agent.input_tokens, agent.output_tokens) for agent in usage.agents]
    scale = max([inp + out for _, inp, out in rows] + [usage.budget or 0, 1])
    bars = [
        Bar(
            label=label,
            y=index * (BAR_HEIGHT + BAR_GAP),
            input_width=_width(inp, scale),
            output_width=_width(out, scale),
            total=inp + out,
        )
        for index, (label, inp, out) in enumerate(rows)
    ]
    budget_x = LABEL_WIDTH + _width(usage.budget, scale) if usage.budget else None
    return Chart(height=len(bars) * (BAR_HEIGHT + BAR_GAP), bars=bars, budget_x=budget_x, scale=scale)


@router.get("/org/usage")
async def usage_page(
    request: Request,
    principal: UsageReader,
    session: SessionDep,
    settings: SettingsDep,
    orgs: OrgServiceDep,
    month: Annotated[str, Query(max_length=7)] = "",
) -> Response:
    assert principal.org_id is not None  # page_permission passed: a member there
    query = UsageQuery.model_validate({"month": month or None})  # the API's YYYY-MM rule
    usage = await UsageService(session, settings.org_monthly_token_budget).month(
        principal.org_id, query.month
    )
    own_budget = None
    manage = principal.can(Permission.ORG_MANAGE)
    if manage:
        own_budget = (await orgs.current(principal.grantor, principal.org_id)).monthly_token_budget
    return org_page(
        request,
        principal,
        "org/usage.html",
        {
            "usage": usage,
            "chart": usage_chart(usage),
            "geometry": {"width": CHART_WIDTH, "label": LABEL_WIDTH, "bar": BAR_HEIGHT},
            "manage": manage,
            "own_budget": own_budget,
            "used_percent": round(100 * usage.used / usage.budget) if usage.budget else None,
        },
    )


@router.post("/org/budget")
async def set_budget(
    request: Request,
    principal: OrgManager,
    orgs: OrgServiceDep,
    monthly_token_budget: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    value = monthly_token_budget.strip().replace(",", "").replace("_", "")
    body = OrgBudgetUpdate.model_validate({"monthly_token_budget": value or None})
    org_id: uuid.UUID | None = principal.org_id
    assert org_id is not None
    await orgs.set_budget(principal.grantor, org_id, body.monthly_token_budget)
    return redirect(request, "/org/usage?done=budget-set")
