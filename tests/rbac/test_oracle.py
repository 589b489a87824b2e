"""Every operation x every kind of caller over HTTP, against the hand-written oracle.

The expectation of each call comes from tests/rbac/operations.py (operation -> access, role
-> permissions, both written from the docs), never from the routes or agentkeep.rbac:

- anonymous: public operations succeed, every other one is 401;
- a team member (owner, admin, member, viewer, auditor): public and authenticated
  operations succeed, superuser ones are 403, permission ones succeed exactly when the
  documented role table gives the role that permission, else 403;
- an owner's API key scoped to `agents:read`: authenticated and superuser operations are 403
  (keys act only through permission routes), permission operations succeed only for
  `agents:read`;
- an outsider (a user of another organization, owner there) and an instance superuser (no
  team role): operations naming a team object answer 404, never the object; the others act
  in their own organization and succeed; superuser operations are 403 for the outsider and
  succeed for the superuser.

"Succeed" means the call's success status (tests/rbac/calls.py builds each request so the
handler runs); a 5xx is never a success. A refusal must be the exact status with an RFC 9457
problem body.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.rbac.calls import CALLS, SESSION_ENDING
from tests.rbac.operations import AUTHENTICATED, OPERATIONS, PUBLIC, ROLE_PERMISSIONS, SUPERUSER
from tests.rbac.world import Caller, build_world

NARROW_KEY_SCOPES = frozenset({"agents:read"})
PROBLEM_JSON = "application/problem+json"


def expected_outcome(caller: Caller, access: str, path: str) -> int | None:
    """The status a refusal must have, or None when the call must succeed."""
    if access == PUBLIC:
        return None
    if caller.kind == "anonymous":
        return 401
    if access == AUTHENTICATED:
        return 403 if caller.kind == "api_key" else None
    if access == SUPERUSER:
        return None if caller.kind == "superuser" else 403
    if caller.kind == "role":
        return None if access in ROLE_PERMISSIONS[caller.name] else 403
    if caller.kind == "api_key":
        return None if access in NARROW_KEY_SCOPES & ROLE_PERMISSIONS["owner"] else 403
    # Outsider or superuser: owners of their own organization, strangers to the team's.
    return 404 if "{" in path else None


def _ordered() -> list[tuple[str, str]]:
    return sorted(OPERATIONS, key=lambda operation: operation in SESSION_ENDING)


async def test_every_operation_answers_every_caller_as_the_documented_table_says(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await build_world(app, client)
    mismatches: list[str] = []
    checked = 0
    for method, path in _ordered():
        access = OPERATIONS[(method, path)]
        for caller in world.callers:
            refusal = expected_outcome(caller, access, path)
            call = await CALLS[(method, path)](world, caller, refusal is None)
            response = await client.request(
                method, call.path, headers=call.headers, json=call.json, data=call.form
            )
            checked += 1
            status = response.status_code
            if refusal is None:
                good = status in call.ok
            else:
                good = status == refusal and response.headers["content-type"].startswith(PROBLEM_JSON)
            if not good:
                wanted = sorted(call.ok) if refusal is None else refusal
                mismatches.append(
                    f"{caller.name} {method} {path}: {status} (wanted {wanted}) {response.text[:160]}"
                )
    assert mismatches == []
    assert checked == len(OPERATIONS) * len(world.callers)


def test_every_operation_has_a_call() -> None:
    assert set(CALLS) == set(OPERATIONS)
