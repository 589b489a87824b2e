"""How a console page fails: as a page, never as JSON and never with a stack trace.

Every console route is a ConsoleRoute. What the services raise (the same AppErrors the API
turns into problem+json) becomes the error page, or for an htmx request the error fragment,
with the problem's status and headers: a 429 says when to retry (and keeps `Retry-After`),
a 403 names the missing permission (its detail does). No session: the sign-in page, coming
back to the page asked for. Invalid form input: the 422 page listing what was wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from agentkeep.console.access import SignInRequired
from agentkeep.console.templating import redirect, render
from agentkeep.errors import AppError
from agentkeep.rbac.dependencies import CONSOLE_TAG

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def sign_in_location(request: Request) -> str:
    # htmx fragments are not pages to come back to; the page showing them is.
    if is_htmx(request) and request.headers.get("hx-current-url"):
        shown = urlsplit(request.headers["hx-current-url"])
        path = shown.path + (f"?{shown.query}" if shown.query else "")
    else:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(path or "/", safe="")


def _field_errors(exc: RequestValidationError | ValidationError) -> list[str]:
    errors: list[str] = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        errors.append(f"{'.'.join(location) or 'input'}: {error.get('msg', 'invalid')}")
    return errors


def error_page(
    request: Request,
    status_code: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    context = {
        "status": status_code,
        "title": title,
        "detail": detail,
        "retry_after": (extra or {}).get("retry_after"),
        "errors": (extra or {}).get("errors", []),
    }
    template = "partials/error.html" if is_htmx(request) else "error.html"
    kept = {name: value for name, value in (headers or {}).items() if name.lower() != "www-authenticate"}
    return render(request, template, context, status_code=status_code, headers=kept)


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return redirect(request, sign_in_location(request))
            except (RequestValidationError, ValidationError) as exc:
                errors = _field_errors(exc)
                return error_page(
                    request,
                    422,
                    "Invalid input",
                    "Please correct: " + "; ".join(errors),
                    extra={"errors": errors},
                )
            except AppError as exc:
                return error_page(
                    request, exc.status_code, exc.title, exc.detail, headers=exc.headers, extra=exc.extra
                )

        return console_handler


def console_router() -> APIRouter:
    """The router of one console area: ConsoleRoute routes, tagged, left out of the OpenAPI document."""
    return APIRouter(route_class=ConsoleRoute, include_in_schema=False, tags=[CONSOLE_TAG])
