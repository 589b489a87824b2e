"""Mounts the console on an app: its per-app state and one router per area."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response

from agentkeep.console.access import Anonymous
from agentkeep.console.assets import CACHE_FOREVER, StaticAssets
from agentkeep.console.pages import (
    agents,
    audit,
    auth,
    chat,
    org,
    org_integrations,
    org_keys,
    org_members,
    org_usage,
    org_webhooks,
    runs,
    sso,
)
from agentkeep.console.route import console_router
from agentkeep.console.session import RefreshCoalescer
from agentkeep.console.templating import create_environment
from agentkeep.errors import NotFound
from agentkeep.security.headers import CONSOLE_MARKER

PAGE_ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    sso.router,
    agents.router,
    chat.router,
    runs.router,
    audit.router,
    org.router,
    org_members.router,
    org_keys.router,
    org_usage.router,
    org_integrations.router,
    org_webhooks.router,
)


async def get_assets(request: Request) -> StaticAssets:
    assets: StaticAssets = request.app.state.console_assets
    return assets


StaticAssetsDep = Annotated[StaticAssets, Depends(get_assets)]
static_router = console_router()


@static_router.get("/static/{digest}/{name:path}", dependencies=[Anonymous])
async def static_file(digest: str, name: str, assets: StaticAssetsDep) -> Response:
    asset = assets.find(digest, name)
    if asset is None:
        raise NotFound("No such file.")
    return Response(
        asset.body,
        media_type=asset.media_type,
        headers={"Cache-Control": CACHE_FOREVER, CONSOLE_MARKER.decode(): "1"},
    )


def mount_console(app: FastAPI) -> None:
    assets = StaticAssets()
    app.state.console_assets = assets
    app.state.console_templates = create_environment(assets)
    app.state.console_refresh = RefreshCoalescer()
    app.include_router(static_router)
    for router in PAGE_ROUTERS:
        app.include_router(router)
