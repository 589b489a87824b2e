"""The organization area: its sections (members, API keys, providers, MCP servers, webhooks,
usage), each a module of its own (org_members.py, org_keys.py, org_integrations.py,
org_webhooks.py, org_usage.py), and the sub-navigation they share.

A section shows in the sub-navigation only to those holding its permission; its pages check
the permission again (page_permission), and each action is the matching API endpoint's
service call, so the grant rules, rate limits, idempotency and audit are the API's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import Response

from agentkeep.auth.dependencies import Principal
from agentkeep.console.access import SignedIn
from agentkeep.console.route import console_router
from agentkeep.console.templating import redirect, render
from agentkeep.errors import Forbidden
from agentkeep.rbac.permissions import Permission

router = console_router()


@dataclass(frozen=True, slots=True)
class OrgSection:
    label: str
    path: str
    permission: Permission


SECTIONS: tuple[OrgSection, ...] = (
    OrgSection("Members", "/org/members", Permission.MEMBERS_READ),
    OrgSection("API keys", "/org/api-keys", Permission.APIKEYS_MANAGE),
    OrgSection("Usage and budget", "/org/usage", Permission.USAGE_READ),
    OrgSection("Model providers", "/org/providers", Permission.ORG_MANAGE),
    OrgSection("MCP servers", "/org/mcp-servers", Permission.ORG_MANAGE),
    OrgSection("Webhooks", "/org/webhooks", Permission.ORG_MANAGE),
)

# What a finished action says on the page it returns to: fixed texts chosen by a key in the
# query string, so nothing a visitor puts in a link is shown as a message.
NOTICES = {
    "member-added": "The member was added.",
    "role-changed": "The role was changed.",
    "member-removed": "The member was removed.",
    "key-revoked": "The API key was revoked: it stops working on its next request.",
    "provider-added": "The provider was added.",
    "provider-deleted": "The provider and its stored key were deleted.",
    "mcp-added": "The MCP server was added.",
    "mcp-deleted": "The MCP server and its stored headers were deleted.",
    "webhook-deleted": "The webhook, its secrets and its delivery log were deleted.",
    "webhook-pinged": "A webhook.ping event was queued; it shows in the delivery log.",
    "budget-set": "The monthly budget was saved.",
}


def org_page(
    request: Request,
    principal: Principal,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> Response:
    """Render a section's page with the sub-navigation the caller may use."""
    notice = NOTICES.get(request.query_params.get("done", ""))
    return render(
        request,
        template,
        {
            "sections": [section for section in SECTIONS if principal.can(section.permission)],
            "notice": notice,
            **context,
        },
        status_code=status_code,
    )


@router.get("/org")
async def org_home(request: Request, principal: SignedIn) -> Response:
    """The first section the caller may use."""
    for section in SECTIONS:
        if principal.can(section.permission):
            return redirect(request, section.path)
    raise Forbidden(f"The organization pages require the '{Permission.MEMBERS_READ.value}' permission.")
