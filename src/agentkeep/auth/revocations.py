"""Announce every change that can withdraw a caller's access, wherever it is made.

Principal caches (auth/principal_cache.py) must forget what they hold as soon as a session
or API key is revoked, a user disabled, a role changed or a membership removed, on every
instance. Rather than trusting each code path to remember, this watches the session for
writes to the columns such decisions read, in bulk statements (`do_orm_execute`) and in
flushed objects (`after_flush`), and announces `REVOCATIONS` on the transaction
(agentkeep.notify): it is delivered to every process when the transaction commits.

Changes that only ever grant access (a new login session, a new key, a new membership) are
not announced: a cache never holds a refusal.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session

from agentkeep.apikeys.models import ApiKey
from agentkeep.auth.models import AuthSession
from agentkeep.notify.announce import announce
from agentkeep.notify.topics import REVOCATIONS
from agentkeep.orgs.models import Membership, Organization
from agentkeep.users.models import User

# Per watched model: the columns whose change may withdraw access (any, for None).
WATCHED: dict[type[Any], frozenset[str] | None] = {
    User: frozenset({"is_active", "is_superuser", "tokens_valid_after", "password_hash"}),
    AuthSession: frozenset({"revoked_at", "expires_at", "org_id"}),
    ApiKey: frozenset({"revoked_at", "expires_at", "scopes", "allowed_cidrs", "org_id"}),
    Membership: None,
    Organization: None,
}


def _withdraws(model: type[Any], columns: set[str]) -> bool:
    watched = WATCHED[model]
    return watched is None or bool(columns & watched)


@event.listens_for(Session, "do_orm_execute")
def _bulk_write(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    model = mapper.class_ if mapper is not None else None
    if model not in WATCHED:
        return
    if state.is_delete:
        announce(state.session, REVOCATIONS)
        return
    values = getattr(state.statement, "_values", None) or {}
    columns = {getattr(key, "key", str(key)) for key in values}
    if not columns or _withdraws(model, columns):
        announce(state.session, REVOCATIONS)


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    for instance in session.deleted:
        if type(instance) in WATCHED:
            announce(session, REVOCATIONS)
            return
    for instance in session.dirty:
        model = type(instance)
        if model not in WATCHED:
            continue
        changed = {attr.key for attr in inspect(instance).attrs if attr.history.has_changes()}
        if changed and _withdraws(model, changed):
            announce(session, REVOCATIONS)
            return
