"""Records whose insert MAC does not verify: how they are recognised and what the sealer does.

Under AUDIT_HMAC_KEY every record the application writes carries a MAC over its content
(keys.py). A pending record without one, under an unknown key, or whose content no longer
matches it was written or changed by someone without the key. The sealer never chains such
a record: it marks it (`seal_refused`, so it is not examined again and never holds up the
genuine records behind it), records an `audit_tamper_detected` event naming it, logs it and
counts it (`agentkeep_audit_tamper_detected_total`). The marked record stays in the table as
evidence; `agentkeep audit verify` fails while it is there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.actions import ActorType, AuditAction, AuditStatus
from agentkeep.audit.chain import PendingRecord, insert_record
from agentkeep.audit.keys import AuditKeyring
from agentkeep.audit.models import AuditLog

logger = structlog.get_logger("agentkeep.audit.tamper")

TamperObserver = Callable[[str], None]


class MacProblem(StrEnum):
    """Why a record's insert MAC does not verify (the `seal_refused` values)."""

    MISSING = "missing_mac"
    UNKNOWN_KEY = "unknown_key"
    MISMATCH = "mac_mismatch"


def mac_problem(keyring: AuditKeyring, row: Mapping[str, Any]) -> MacProblem | None:
    """What is wrong with `row`'s insert MAC under `keyring`, or None when it verifies."""
    if row.get("mac") is None or row.get("key_id") is None:
        return MacProblem.MISSING
    key = keyring.get(row["key_id"])
    if key is None:
        return MacProblem.UNKNOWN_KEY
    if key.insert_mac(row) != row["mac"]:
        return MacProblem.MISMATCH
    return None


def _logs() -> Table:
    table = AuditLog.__table__
    assert isinstance(table, Table)
    return table


_LOGS = _logs()
_REFUSE_ROW = (
    update(_LOGS)
    .where(_LOGS.c.id == bindparam("b_id"), _LOGS.c.sequence.is_(None))
    .values(seal_refused=bindparam("b_reason"))
)


async def refuse_forged(
    session: AsyncSession,
    chain: str,
    refusals: Iterable[tuple[uuid.UUID, MacProblem]],
    on_tamper: TamperObserver | None = None,
) -> int:
    """Mark each forged pending record and record the detection, in the sealer's transaction."""
    marked = 0
    for record_id, problem in refusals:
        await session.execute(_REFUSE_ROW, {"b_id": record_id, "b_reason": problem.value})
        event = PendingRecord(
            chain=chain,
            user_id=None,
            org_id=None,
            actor_type=ActorType.SYSTEM.value,
            action=AuditAction.AUDIT_TAMPER_DETECTED.value,
            resource_type="audit_log",
            resource_id=str(record_id),
            status=AuditStatus.FAILURE.value,
            details={"reason": problem.value, "chain": chain},
            ip_address=None,
            user_agent=None,
            request_id=None,
        )
        await insert_record(session, event)
        # Only the id and the reason: the forged record's values are an attacker's text.
        logger.error("audit_tamper_detected", chain=chain, record_id=str(record_id), reason=problem.value)
        if on_tamper is not None:
            on_tamper(problem.value)
        marked += 1
    return marked
