"""The OpenAPI document as the API's contract: every error each operation can answer.

FastAPI documents a route's success answer and a generic 422. This module completes the
document from what each route declares, so a new route is documented without anyone
remembering to:

- its access marker (agentkeep.rbac.dependencies): 401 and 403, the security requirement
  (bearer access token, or also an `X-API-Key`) and the permission in the description;
- the authentication dependency (per-principal API limit) or a `rate_limit(...)` dependency:
  429 with Retry-After and the RateLimit fields;
- every route but the probes: 503 with Retry-After (MAX_REQUESTS_IN_FLIGHT reached), which
  a database session, sessionmaker or engine among its dependencies also answers (an outage);
- path parameters: 404 (an unknown id, or one of another organization);
- any parameter or a body: 422 with `errors`; a body also 400 (unparseable) and 413;
- an `Idempotency-Key` header: 409 (the key was used with another body);
- an `If-Match` header: 412 (the version moved on).

Outcomes only a service knows (a taken name: 409) are declared on the route with FastAPI's
`responses=`; every error status, however declared, is rendered here as
`application/problem+json` with the shared `Problem` schema (`ValidationProblem` for 422).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from agentkeep.auth.dependencies import get_current_principal
from agentkeep.db.session import get_session, get_sessionmaker, get_write_session
from agentkeep.dependencies import get_engine
from agentkeep.errors import PROBLEM_JSON
from agentkeep.ratelimit.dependency import rate_limit
from agentkeep.rbac.dependencies import RequirePermission, RouteAccess, declared_access, dependency_calls
from agentkeep.security.in_flight import NEVER_REFUSED

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
VALIDATION_PROBLEM_REF = {"$ref": "#/components/schemas/ValidationProblem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem; some types add members (e.g. `retry_after`, `field`).",
    "type": "object",
    "required": ["type", "title", "status", "detail", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "`urn:agentkeep:problem:<slug>`, stable per kind."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request path."},
        "request_id": {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "description": "Also in the X-Request-ID response header; quote it when reporting.",
        },
    },
    "additionalProperties": True,
}

VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ValidationProblem",
    "description": "A 422 problem; `errors` (schema violations) says where, never echoing the input.",
    "allOf": [
        PROBLEM_REF,
        {
            "type": "object",
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {"type": "array", "items": {"type": "string"}},
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                }
            },
        },
    ],
}

SECURITY_SCHEMES: dict[str, Any] = {
    "BearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /auth/login (or /auth/refresh).",
    },
    "ApiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An organization API key (`ak_...`); `Authorization: Bearer ak_...` works too.",
    },
}

_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 0},
}
_RATE_LIMIT_HEADERS = {
    "Retry-After": {**_RETRY_AFTER, "required": True},
    "RateLimit-Policy": {
        "description": 'The limit that applied, e.g. `"api";q=600;w=60`.',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'Quota left and when it resets, e.g. `"auth";r=0;t=42`.',
        "schema": {"type": "string"},
    },
}


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    description: str
    headers: dict[str, Any] | None = None


# One operation's dependencies, read once: which markers, and which known callables.
@dataclass(frozen=True, slots=True)
class _RouteFacts:
    access: tuple[RouteAccess, ...]
    calls: tuple[Callable[..., Any], ...]

    def calls_any(self, *targets: Callable[..., Any]) -> bool:
        return any(call in targets for call in self.calls)


_RATE_LIMIT_QUALNAME = f"{rate_limit.__qualname__}.<locals>."


def _resolves_principal(facts: _RouteFacts) -> bool:
    """The route authenticates its caller (`get_current_principal`, or `require(...)`, which
    resolves the caller itself), per-principal API limit included."""
    requires = any(isinstance(call, RequirePermission) for call in facts.calls)
    return requires or facts.calls_any(get_current_principal)


def _is_rate_limited(facts: _RouteFacts) -> bool:
    return _resolves_principal(facts) or any(
        getattr(call, "__qualname__", "").startswith(_RATE_LIMIT_QUALNAME) for call in facts.calls
    )


def _access_answers(access: RouteAccess) -> Iterator[ErrorAnswer]:
    if access.kind == "public":
        return
    yield ErrorAnswer(
        401,
        "Missing, invalid, expired or revoked credentials.",
        {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    )
    if access.kind == "permission":
        assert access.permission is not None
        why = f"The caller (or its API key) lacks `{access.permission.value}` in the current organization."
    elif access.kind == "superuser":
        why = "The caller is not an administrator, or called with an API key."
    else:
        why = "API keys are refused here: this needs a login session."
    yield ErrorAnswer(403, why)


def access_note(access: RouteAccess) -> str:
    """The sentence the operation's description gets about who may call it."""
    if access.kind == "permission":
        assert access.permission is not None
        return f"Requires permission `{access.permission.value}`."
    if access.kind == "superuser":
        return "Requires an administrator's login session (superuser); API keys are refused."
    if access.kind == "authenticated":
        return "Requires a login session (access token); API keys are refused."
    return "No authentication."


def security_of(access: RouteAccess) -> list[dict[str, list[str]]]:
    if access.kind == "permission":
        return [{"BearerAuth": []}, {"ApiKeyAuth": []}]
    if access.kind in ("authenticated", "superuser"):
        return [{"BearerAuth": []}]
    return []


def _unavailable(facts: _RouteFacts, path: str) -> ErrorAnswer | None:
    database = facts.calls_any(get_session, get_write_session, get_sessionmaker, get_engine)
    overloaded = path not in NEVER_REFUSED  # every other route refuses beyond the bound
    causes = [
        *(["the database is not answering"] if database else []),
        *(["the server has MAX_REQUESTS_IN_FLIGHT requests in flight"] if overloaded else []),
    ]
    if not causes:
        return None
    why = ", or ".join(causes)
    return ErrorAnswer(503, f"{why[0].upper()}{why[1:]}; retry shortly.", {"Retry-After": _RETRY_AFTER})


def error_answers(facts: _RouteFacts, operation: dict[str, Any], path: str) -> list[ErrorAnswer]:
    """Every error status the operation can answer, from its path, dependencies and parameters."""
    answers: list[ErrorAnswer] = []
    for access in facts.access:
        answers.extend(_access_answers(access))
    parameters = operation.get("parameters", [])
    located = {(p["in"], p["name"].lower()) for p in parameters}
    has_body = "requestBody" in operation
    if has_body:
        answers.append(ErrorAnswer(400, "The body could not be parsed (malformed JSON or form data)."))
    if any(where == "path" for where, _ in located):
        answers.append(
            ErrorAnswer(404, "No such resource in the current organization (another one's is not shown).")
        )
    if ("header", "idempotency-key") in located:
        answers.append(ErrorAnswer(409, "This Idempotency-Key was used with a different request."))
    if ("header", "if-match") in located:
        answers.append(ErrorAnswer(412, "If-Match does not name the current version (see the ETag)."))
    if has_body:
        answers.append(ErrorAnswer(413, "The body exceeds MAX_BODY_BYTES."))
    if parameters or has_body:
        answers.append(
            ErrorAnswer(422, "The request does not match the schema, or breaks a rule; see `errors`.")
        )
    if _is_rate_limited(facts):
        answers.append(
            ErrorAnswer(429, "A rate limit is reached; retry after Retry-After seconds.", _RATE_LIMIT_HEADERS)
        )
    unavailable = _unavailable(facts, path)
    if unavailable is not None:
        answers.append(unavailable)
    return answers


def _problem_content(status: int) -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": VALIDATION_PROBLEM_REF if status == 422 else PROBLEM_REF}}


def _is_error(status: str) -> bool:
    return status.isdigit() and int(status) >= 400


def _merge(responses: dict[str, Any], answer: ErrorAnswer) -> None:
    response = responses.setdefault(str(answer.status), {})
    if not response.get("description") or response["description"] == HTTPStatus(answer.status).phrase:
        response["description"] = answer.description
    if answer.headers:
        response.setdefault("headers", {}).update(
            {
                name: dict(header)
                for name, header in answer.headers.items()
                if name not in response.get("headers", {})
            }
        )


def _render_problems(responses: dict[str, Any]) -> None:
    """Every error answer is problem+json, unless the route documents a model of its own
    (the health report a failing readiness probe answers)."""
    for status, response in responses.items():
        if not _is_error(status):
            continue
        content = response.get("content", {})
        own = content.get("application/json", {}).get("schema", {})
        if not content or own.get("$ref", "").endswith("/HTTPValidationError"):
            response["content"] = _problem_content(int(status))


def _route_facts(app: FastAPI) -> Iterator[tuple[str, Iterable[str], _RouteFacts]]:
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        if isinstance(dependant, Dependant):
            facts = _RouteFacts(
                access=tuple(declared_access(dependant)), calls=tuple(dependency_calls(dependant))
            )
            yield str(context.path), (context.methods or ()), facts


def complete_document(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """Add error answers, problem schemas, security and access notes to `document`."""
    for path, methods, facts in _route_facts(app):
        for method in methods:
            operation = document.get("paths", {}).get(path, {}).get(method.lower())
            if operation is None:  # not in the schema (include_in_schema=False)
                continue
            responses = operation.setdefault("responses", {})
            for answer in error_answers(facts, operation, path):
                _merge(responses, answer)
            _render_problems(responses)
            for access in facts.access:
                security = security_of(access)
                if security:
                    operation["security"] = security
                else:
                    operation.pop("security", None)
                note = access_note(access)
                description = operation.get("description", "")
                operation["description"] = f"{description}\n\n{note}" if description else note
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at the app's openapi_url (built once, on first request)."""
    build_default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(app, build_default())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
