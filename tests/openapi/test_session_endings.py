"""Logout, password change and switch-org end the caller's token, so the shared-token fuzz
run leaves them out: here each generated request runs with a login session of its own, and
every answer is checked against the document with every check (fuzzing phase only: each
request costs a login, and they have no workflow to follow). Their effect on tokens is tested in
tests/auth/test_revocation.py and tests/orgs/test_memberships.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import AuthContext, Case

from tests.openapi.conftest import LiveApi, login
from tests.openapi.test_fuzz import SESSION_ENDINGS, failures_of, fuzz_config

# A whole fuzz run, not one request: the suite's 120 s per-test guard is too tight for it on a
# loaded host, so it gets its own (the run itself takes about a minute).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]


def test_session_ending_operations_answer_as_documented(live_api: LiveApi) -> None:
    config = fuzz_config(live_api.access_token, max_examples=3)
    del config["auth"]  # a fresh session per request instead of the shared token
    config["phases"]["stateful"] = {"enabled": False}
    config["phases"]["examples"] = {"enabled": False}
    # Every request costs a login (an argon2id hash): the coverage phase's hundreds of
    # boundary cases would take minutes; random valid and invalid inputs stay.
    config["phases"]["coverage"] = {"enabled": False}
    schema = schemathesis.openapi.from_url(
        f"{live_api.base_url}/openapi.json", config=schemathesis.Config.from_dict(config)
    ).include(path=SESSION_ENDINGS)

    @schema.auth(refresh_interval=None)
    class FreshSession:
        """A new login for every request: whatever the request ends, the next has its own."""

        def get(self, case: Case[Any], ctx: AuthContext) -> str:
            with httpx.Client(base_url=live_api.base_url, timeout=30) as http:
                return login(http, live_api.username, live_api.password)

        def set(self, case: Case[Any], data: Any, ctx: AuthContext) -> None:
            case.headers["Authorization"] = f"Bearer {data}"

    failures = failures_of(schema)
    assert not failures, "\n".join(failures)
