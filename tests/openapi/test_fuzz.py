"""Schemathesis, with every check and every phase, against a live `agentkeep serve`: zero
failures.

Run as the owner of an organization (registered and logged in through the API), on SQLite,
with generous rate limits set through the documented variables (tests/openapi/conftest.py).
The run goes through `schemathesis.engine`, the library entry point `st run` itself uses: it
runs the examples, coverage, fuzzing and stateful phases (the stateful one over the links
schemathesis infers: create, then read, change and delete what was created). Schemathesis
4.32.5's pytest plugin (`from_fixture` + `parametrize`) does not run under pytest 9.2.

Bounds, chosen so the run takes about a minute on a loaded 2-core host: at most 6 fuzzed
examples per operation (the coverage phase already walks every schema boundary and negative
variant), 3 on register (each example hashes a password with argon2id), and stateful
scenarios of at most 6 steps. Deterministic: a fixed seed, derandomized generation, and no
example database.

Operations that end the caller's session (logout, password change, and switch-org, after
which tokens issued before stop working) would revoke the shared token: they are fuzzed in
tests/openapi/test_session_endings.py, each example with a session of its own.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis import BaseSchema
from schemathesis.engine import Status, events, from_schema
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.openapi.conftest import LiveApi

# A whole fuzz run, not one request: the suite's 120 s per-test guard is too tight for it on a
# loaded host, so it gets its own (the run itself takes about a minute).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

SEED = 20250113
SESSION_ENDINGS = ["/auth/logout", "/auth/password", "/auth/switch-org"]
# Connects to the URL of a registered MCP server: with fuzzed URLs (any public address) it
# would send traffic off this machine. tests/mcp covers it against servers on loopback.
CONTACTS_THE_REGISTERED_SERVER = "/api/orgs/{org_id}/mcp-servers/{server_id}/tools"
# Queue a request to a registered webhook's URL: with fuzzed URLs (any public address) the
# app's sender would send traffic off this machine. tests/webhooks covers them on loopback.
SENDS_TO_THE_WEBHOOK = [
    "/api/orgs/{org_id}/webhooks/{webhook_id}/ping",
    "/api/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
]

# positive_data_acceptance's defaults, plus 412: a schema-valid If-Match naming another
# version is refused with the documented 412, which is the point of If-Match.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
# Rules JSON Schema cannot state, answered with the documented 422 (each a known gap of the
# document, named here so that nothing else is exempted). Everything a schema can say is in
# the document: patterns (usage month), bounds (Last-Event-ID), and named formats with their
# generators in conftest.py (cursor, version-cursor, message-cursor, printable-line, password,
# cidr).
SEMANTIC_RULES = {
    ("POST", "/api/api-keys"): "expires_at must be in the future",
    # Items differ in their settings, so uniqueItems (whole-item equality) cannot say it; and
    # each tool's settings have their own rules (http_get's hosts).
    ("POST", "/api/agents"): "tool settings per tool, each tool once",
    ("PATCH", "/api/agents/{agent_id}"): "tool settings per tool, each tool once",
    ("POST", "/api/orgs/{org_id}/providers"): "base_url: no metadata host, credentials, query",
    ("PATCH", "/api/orgs/{org_id}/providers/{provider_id}"): "base_url as on create",
    (
        "POST",
        "/api/orgs/{org_id}/mcp-servers",
    ): "url: no metadata host, credentials, query, private literal; headers",
    ("PATCH", "/api/orgs/{org_id}/mcp-servers/{server_id}"): "url and headers as on create",
    ("POST", "/api/orgs/{org_id}/webhooks"): "url: no metadata host, credentials, private literal",
    ("PATCH", "/api/orgs/{org_id}/webhooks/{webhook_id}"): "url as on create",
}


def fuzz_config(token: str, *, max_examples: int = 6) -> dict[str, Any]:
    return {
        "seed": SEED,
        "checks": {"enabled": True, "positive_data_acceptance": {"expected-statuses": ACCEPTED}},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": 6},
        },
        "generation": {"max-examples": max_examples, "deterministic": True, "database": "none"},
        "auth": {"openapi": {"BearerAuth": {"bearer": token}}},
        "request-timeout": 30,
        "operations": [
            {"include-path": "/auth/register", "generation": {"max-examples": 3}},
            *(
                {
                    "include-method": method,
                    "include-path": path,
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
                }
                for method, path in SEMANTIC_RULES
            ),
        ],
    }


def load_schema(base_url: str, token: str, **config: Any) -> OpenApiSchema:
    settings = schemathesis.Config.from_dict(fuzz_config(token, **config))
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=settings)


def failures_of(schema: BaseSchema) -> list[str]:
    """Run every phase; every failed check and every engine error, readable."""
    found: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        interaction = event.recorder.interactions.get(case_id)
                        answer = interaction.response if interaction is not None else None
                        said = f"{answer.status_code} {answer.content[:400]!r}" if answer else "no answer"
                        found.append(
                            f"{failure.operation} [{failure.code}] {failure.title}: {failure.message}\n"
                            f"    {check.failure_info.code_sample}\n    -> {said}"
                        )
        elif isinstance(event, events.NonFatalError):
            found.append(f"error: {event.info}")
        elif isinstance(event, events.FatalError):
            found.append(f"fatal: {event.exception!r}")
    return sorted(set(found))


def test_every_operation_answers_as_documented(live_api: LiveApi) -> None:
    """Examples, boundaries, negative and random inputs, and workflows: every answer
    (status, media type, body, headers) matches the document."""
    schema = load_schema(live_api.base_url, live_api.access_token).exclude(path=SESSION_ENDINGS)
    schema = schema.exclude(path=[CONTACTS_THE_REGISTERED_SERVER, *SENDS_TO_THE_WEBHOOK])
    failures = failures_of(schema)
    assert not failures, "\n".join(failures)
