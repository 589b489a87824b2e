"""Claiming an idempotency key before creating a resource.

The key row is written *before* the resource, in the request's transaction, so of two
concurrent requests with the same key exactly one creates: the other waits on the unique
index until the first commits, then finds its row and returns the same resource (or 409 if
its body differs). Keys are kept for `IDEMPOTENCY_TTL`; an older key is treated as new.
The INSERT comes first: a new key (the usual case) costs that one statement.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.errors import Conflict, InvalidInput
from agentkeep.idempotency.models import IDEMPOTENCY_KEY_MAX, IdempotencyKey

IDEMPOTENCY_TTL = timedelta(hours=24)


class IdempotencyKeyReused(Conflict):
    type_slug = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"


@dataclass(frozen=True, slots=True)
class IdempotencyScope:
    org_id: uuid.UUID
    principal: str
    scope: str


def fingerprint(payload: Any) -> str:
    """SHA-256 of the canonical JSON of what identifies the request (body and path ids)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable() or not key.isascii():
        raise InvalidInput(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters.")
    return key


@functools.cache
def _insert_if_absent_statement(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING of one key row, built once (values are bound)."""
    table = IdempotencyKey.__table__
    assert isinstance(table, Table)
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing()


class IdempotencyStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self, scope: IdempotencyScope, key: str, request_fingerprint: str, new_resource_id: uuid.UUID
    ) -> uuid.UUID | None:
        """None: this request owns the key and must create `new_resource_id`. Otherwise the
        id an earlier identical request created. `IdempotencyKeyReused` (409) when the
        earlier request had another body."""
        key = validate_key(key)
        # The first request with a key is the common case: one INSERT, no read before it.
        if await self._insert_if_absent(scope, key, request_fingerprint, new_resource_id):
            return None
        existing = await self._find(scope, key)
        if existing is not None and existing.created_at < datetime.now(UTC) - IDEMPOTENCY_TTL:
            await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == existing.id))
            if await self._insert_if_absent(scope, key, request_fingerprint, new_resource_id):
                return None
            existing = await self._find(scope, key)
        if existing is None:  # pragma: no cover - the twin rolled back; let the client retry
            raise IdempotencyKeyReused(
                "A concurrent request with this Idempotency-Key did not complete; retry."
            )
        if existing.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used with a different request body.",
                extra={"resource_id": str(existing.resource_id)},
            )
        return existing.resource_id

    async def _insert_if_absent(
        self, scope: IdempotencyScope, key: str, request_fingerprint: str, resource_id: uuid.UUID
    ) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING: True if this request's row went in.

        No savepoint: on SQLite, a SAVEPOINT opened outside a transaction commits when it is
        released, which would make the key durable before (or without) its resource.
        """
        values = {
            "id": uuid.uuid4(),
            "org_id": scope.org_id,
            "principal": scope.principal,
            "scope": scope.scope,
            "key": key,
            "fingerprint": request_fingerprint,
            "resource_id": resource_id,
            "created_at": datetime.now(UTC),
        }
        statement = _insert_if_absent_statement(self.session.get_bind().dialect.name)
        result = await self.session.execute(statement, values)
        return int(cast(CursorResult[Any], result).rowcount) == 1

    async def _find(self, scope: IdempotencyScope, key: str) -> IdempotencyKey | None:
        result = await self.session.execute(
            select(IdempotencyKey).where(
                IdempotencyKey.org_id == scope.org_id,
                IdempotencyKey.principal == scope.principal,
                IdempotencyKey.scope == scope.scope,
                IdempotencyKey.key == key,
            )
        )
        return result.scalar_one_or_none()
