"""Jinja2 for the console: one Environment per app (created by mount_console), autoescape
on for every template, undefined variables an error. Templates only display: every value
they show was computed by a page module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from agentkeep.console import csrf
from agentkeep.console.assets import StaticAssets
from agentkeep.console.nav import visible_areas
from agentkeep.console.session import apply_cookies, request_slot
from agentkeep.security.headers import CONSOLE_MARKER

TEMPLATES_DIR = Path(__file__).parent / "templates"
# Pages show one person's data: never stored by a cache, never served from history.
PAGE_HEADERS = {"Cache-Control": "no-store", CONSOLE_MARKER.decode(): "1"}


def create_environment(assets: StaticAssets) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["static"] = assets.url
    return environment


def environment_of(request: Request) -> Environment:
    environment: Environment = request.app.state.console_templates
    return environment


def page_context(request: Request) -> dict[str, Any]:
    """What base.html needs: who is signed in, the nav they may use, the CSRF token."""
    slot = request_slot(request)
    principal = slot.get("principal")
    settings = request.app.state.settings
    token = slot.get("presession_csrf")
    if principal is not None and principal.session_id is not None:
        token = csrf.session_token(settings, principal.session_id)
    return {
        "principal": principal,
        "nav": visible_areas(principal) if principal is not None else (),
        "current_path": request.url.path,
        "csrf_token": token or "",
        "registration_open": settings.registration_open,
    }


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    body = environment_of(request).get_template(template).render({**page_context(request), **(context or {})})
    response = HTMLResponse(body, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})})
    apply_cookies(request, response)
    return response


def redirect(request: Request, location: str, *, status_code: int = 303) -> Response:
    """After a form: see the result at `location` (an htmx request is told to navigate)."""
    if request.headers.get("hx-request") == "true":
        response: Response = Response(status_code=204, headers={**PAGE_HEADERS, "HX-Redirect": location})
    else:
        response = RedirectResponse(location, status_code=status_code, headers=PAGE_HEADERS)
    return apply_cookies(request, response)
