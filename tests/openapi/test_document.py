"""The served /openapi.json documents every error each operation can answer.

The expectations are written by hand from the documented API (README, docs/SECURITY.md,
docs/ARCHITECTURE.md), not read from the module that completes the document.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agentkeep.rbac.dependencies import Public

PROBLEM = {"$ref": "#/components/schemas/Problem"}
VALIDATION_PROBLEM = {"$ref": "#/components/schemas/ValidationProblem"}
SUCCESS = {"200", "201", "202", "204"}

# operation -> (every status it can answer, its security alternatives, its permission note)
EXPECTED: dict[tuple[str, str], tuple[set[str], list[str], str]] = {
    # Public, form body, per-IP limit; wrong credentials are 401.
    ("post", "/auth/login"): (
        {"200", "400", "401", "413", "422", "429", "503"},
        [],
        "No authentication.",
    ),
    # Public JSON body, per-IP limit; registration may be closed (403); a taken name (409).
    ("post", "/auth/register"): (
        {"201", "400", "403", "409", "413", "422", "429", "503"},
        [],
        "No authentication.",
    ),
    # Permission route with a path id, a body and If-Match.
    ("patch", "/api/agents/{agent_id}"): (
        {"200", "400", "401", "403", "404", "409", "412", "413", "422", "429", "502", "503", "504"},
        ["BearerAuth", "ApiKeyAuth"],
        "Requires permission `agents:write`.",
    ),
    # Permission route with an Idempotency-Key and a body, no path id.
    # An `mcp:` tool may have its server asked for its tools (docs/approvals.md): 502, 504.
    ("post", "/api/agents"): (
        {"201", "400", "401", "403", "409", "413", "422", "429", "502", "503", "504"},
        ["BearerAuth", "ApiKeyAuth"],
        "Requires permission `agents:write`.",
    ),
    # A list: query parameters only.
    ("get", "/api/runs"): (
        {"200", "401", "403", "422", "429", "503"},
        ["BearerAuth", "ApiKeyAuth"],
        "Requires permission `runs:read`.",
    ),
    # A login session only (API keys refused with 403), no parameters.
    ("get", "/auth/me"): ({"200", "401", "403", "429", "503"}, ["BearerAuth"], "login session"),
    # Administrators only.
    ("post", "/api/users/{user_id}/disable"): (
        {"200", "401", "403", "404", "409", "422", "429", "503"},
        ["BearerAuth"],
        "administrator",
    ),
    # Liveness touches nothing: it answers 200 only.
    ("get", "/health/live"): ({"200"}, [], "No authentication."),
}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in methods
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
async def test_representative_operations_list_every_answer(
    document: dict[str, Any], method: str, path: str
) -> None:
    statuses, security, note = EXPECTED[(method, path)]
    operation = document["paths"][path][method]
    assert set(operation["responses"]) == statuses
    for status in statuses - SUCCESS:
        content = operation["responses"][status]["content"]
        expected = VALIDATION_PROBLEM if status == "422" else PROBLEM
        assert content == {"application/problem+json": {"schema": expected}}, status
    assert [name for requirement in operation.get("security", []) for name in requirement] == security
    assert note in operation["description"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_operation_documents_its_errors_as_problems(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        secured = bool(operation.get("security"))
        label = f"{method.upper()} {path}"
        if secured:
            assert {"401", "403", "429"} <= set(responses), label
            assert "Requires " in operation["description"], label
        if "{" in path:
            assert "404" in responses, label
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(responses), label
        if operation.get("parameters"):
            assert "422" in responses, label
        if "429" in responses:
            assert responses["429"]["headers"]["Retry-After"]["required"] is True, label
        for status, response in responses.items():
            if int(status) >= 400 and path not in ("/health", "/health/ready"):
                assert set(response["content"]) == {"application/problem+json"}, (label, status)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_route_but_the_probes_documents_the_overload_answer(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """README: beyond MAX_REQUESTS_IN_FLIGHT any route answers 503 with Retry-After; the probes
    (and /metrics) are never refused. A route that touches no database says so too."""

    @app.get("/test/no-database", dependencies=[Public])
    async def no_database() -> dict[str, str]:
        return {}

    document: dict[str, Any] = (await client.get("/openapi.json")).json()
    for method, path, operation in _operations(document):
        if path == "/health/live":
            assert "503" not in operation["responses"]
            continue
        answer = operation["responses"]["503"]
        assert "Retry-After" in answer.get("headers", {}), f"{method.upper()} {path}"
        if path not in ("/health", "/health/ready"):
            assert "MAX_REQUESTS_IN_FLIGHT" in answer["description"], f"{method.upper()} {path}"
    assert "/test/no-database" in document["paths"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_problem_schemas_and_security_schemes_are_declared(document: dict[str, Any]) -> None:
    components = document["components"]
    problem = components["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "request_id"}
    validation = components["schemas"]["ValidationProblem"]
    assert PROBLEM in validation["allOf"]
    assert "HTTPValidationError" not in components["schemas"]
    schemes = components["securitySchemes"]
    assert schemes["BearerAuth"] == {**schemes["BearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["ApiKeyAuth"] == {
        **schemes["ApiKeyAuth"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_error_answer_matches_its_documented_media_type(client: httpx.AsyncClient) -> None:
    answer = await client.get("/auth/me")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_method_not_allowed_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """RFC 9110: Allow names every method the resource supports, not those of one route."""
    answer = await client.request("PUT", "/api/agents/00000000-0000-0000-0000-000000000000")
    assert answer.status_code == 405
    assert {m.strip() for m in answer.headers["allow"].split(",")} == {"GET", "PATCH", "DELETE"}


def _parameter(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    found = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    assert len(found) == 1, name
    schema: dict[str, Any] = found[0]["schema"]
    # An optional query parameter is `anyOf: [<its schema>, null]`.
    return next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), schema)


# The documented inputs' rules, as the docs state them (docs/runs.md, docs/agents.md, README):
# a schema that says them lets generated clients and fuzzers send only what is accepted.


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_last_event_id_is_a_32_bit_event_id(document: dict[str, Any]) -> None:
    """docs/runs.md: an event id, 0 to 2**31 - 1, in plain ASCII digits (headers are text); an
    empty header counts as absent."""
    schema = _parameter(document, "get", "/api/runs/{run_id}/events", "Last-Event-ID")
    assert schema["type"] == "string"
    pattern = schema["pattern"]
    assert not re.search(r"\(\?<?[=!]", pattern)
    for event_id in ("", "0", "7", "0000000007", "999999999", "1999999999", "2147483639", "2147483647"):
        assert re.fullmatch(pattern, event_id), event_id
    refused = (" ", "-1", "+5", "1_0", "2147483648", "2200000000", "9999999999", "00000000007", "\u0665")
    for event_id in refused:
        assert not re.fullmatch(pattern, event_id), event_id


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_usage_month_states_years_0001_to_9999(document: dict[str, Any]) -> None:
    pattern = _parameter(document, "get", "/api/usage", "month")["pattern"]
    assert not re.search(r"\(\?<?[=!]", pattern)  # no lookaround: not every generator reads it
    for month in ("0001-01", "0999-12", "1970-01", "9999-12"):
        assert re.fullmatch(pattern, month), month
    for month in ("0000-01", "2024-00", "2024-13", "10000-01", "2024-1", "\u0662\u0660\u0662\u0664-01"):
        assert not re.fullmatch(pattern, month), month


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_version_cursors_are_their_own_format(document: dict[str, Any]) -> None:
    """A (time, id) cursor of another list is refused by the versions list: its format says so."""
    versions = _parameter(document, "get", "/api/agents/{agent_id}/versions", "cursor")
    assert versions["format"] == "version-cursor"
    for path in ("/api/agents", "/api/runs", "/api/api-keys"):
        assert _parameter(document, "get", path, "cursor")["format"] == "cursor", path


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_message_cursors_are_their_own_format(document: dict[str, Any]) -> None:
    """The messages list resumes after a message number, not a (time, id): its own format."""
    messages = _parameter(document, "get", "/api/threads/{thread_id}/messages", "cursor")
    assert messages["format"] == "message-cursor"
    assert _parameter(document, "get", "/api/threads", "cursor")["format"] == "cursor"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_agent_names_are_printable_lines(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    names = [
        _parameter(document, "get", "/api/agents", "name"),
        schemas["AgentCreate"]["properties"]["name"],
        schemas["AgentUpdate"]["properties"]["name"],
    ]
    for name in names:
        assert (name["format"], name["minLength"], name["maxLength"]) == ("printable-line", 1, 100)
