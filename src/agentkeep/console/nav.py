"""The console's areas, as the base layout's navigation lists them.

One entry per area, each served by one module in pages/. An area shows only to those
holding its permission (the page itself checks it again). A new area adds its entry here
and its router in router.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentkeep.auth.dependencies import Principal
from agentkeep.rbac.permissions import Permission


@dataclass(frozen=True, slots=True)
class NavArea:
    label: str
    path: str
    permission: Permission | None  # None: every signed-in user


AREAS: list[NavArea] = [
    NavArea("Agents", "/agents", Permission.AGENTS_READ),
    NavArea("Chat", "/chat", Permission.RUNS_READ),
    NavArea("Runs", "/runs", Permission.RUNS_READ),
    NavArea("Audit", "/audit", Permission.AUDIT_READ),
    NavArea("Organization", "/org", Permission.MEMBERS_READ),
]


def visible_areas(principal: Principal) -> list[NavArea]:
    return [area for area in AREAS if area.permission is None or principal.can(area.permission)]
