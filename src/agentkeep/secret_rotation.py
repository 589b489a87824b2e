"""One pass of re-encryption over the rows of one kind that hold secrets
(`agentkeep providers reencrypt`: provider API keys, MCP servers' headers, webhooks' signing
secrets).

One short transaction per row (locked, rewritten, audited as a system change), so a long
sweep never holds the audit chain or many rows at once. A row whose secret no configured key
decrypts is left unchanged and reported.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import record
from agentkeep.context import RequestContext
from agentkeep.security.secretbox import SecretDecryptionError


class SecretHolder(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def org_id(self) -> uuid.UUID: ...


Row = TypeVar("Row", bound=SecretHolder)
Unreadable = TypeVar("Unreadable")


# No slots: a slotted dataclass is a new class, which Generic subscription cannot handle.
@dataclass(frozen=True)
class RowKind(Generic[Row, Unreadable]):
    """How to find, lock, rewrite, audit and report the rows of one kind."""

    ids: Callable[[AsyncSession], Awaitable[list[uuid.UUID]]]
    # None: deleted meanwhile, or nothing to rewrite.
    locked: Callable[[AsyncSession, uuid.UUID], Awaitable[Row | None]]
    # Re-encrypts the row's secrets in place; raises SecretDecryptionError.
    rotate: Callable[[Row], None]
    action: AuditAction
    resource_type: str
    details: Callable[[Row], Mapping[str, Any]]
    unreadable: Callable[[Row], Unreadable]


@dataclass
class RotationReport(Generic[Unreadable]):
    rewritten: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)


async def rotate_rows(
    sessionmaker: async_sessionmaker[AsyncSession], kind: RowKind[Row, Unreadable]
) -> RotationReport[Unreadable]:
    report: RotationReport[Unreadable] = RotationReport()
    async with sessionmaker() as session:
        ids = await kind.ids(session)
    for row_id in ids:
        async with sessionmaker() as session, session.begin():
            row = await kind.locked(session, row_id)
            if row is None:
                continue
            try:
                kind.rotate(row)
            except SecretDecryptionError:
                report.unreadable.append(kind.unreadable(row))
                continue
            await record(
                session,
                kind.action,
                context=RequestContext.system(),
                org_id=row.org_id,
                actor_type=ActorType.SYSTEM,
                resource_type=kind.resource_type,
                resource_id=row.id,
                details={**kind.details(row), "changed": ["encryption_key"]},
            )
            report.rewritten += 1
    return report
