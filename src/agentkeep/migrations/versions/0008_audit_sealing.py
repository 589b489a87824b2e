"""Deferred sealing of audit records: a record may be stored before its place in the chain.

A request inserts its audit record with sequence, prev_hash and hash NULL (atomically with
the change it describes); the sealer fills all three once, in order, shortly after the
commit. A partial index holds the unsealed records, and a check keeps the three columns
all set or all NULL.

Revision ID: 0008_audit_sealing
Revises: 0007_providers
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_audit_sealing"
down_revision: str | None = "0007_providers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSEALED = "sequence IS NULL"
SEALED_ALL_OR_NONE = (
    "(sequence IS NULL AND prev_hash IS NULL AND hash IS NULL)"
    " OR (sequence IS NOT NULL AND prev_hash IS NOT NULL AND hash IS NOT NULL)"
)
SEALED_COLUMNS = (("sequence", sa.BigInteger()), ("prev_hash", sa.String(64)), ("hash", sa.String(64)))


def upgrade() -> None:
    with op.batch_alter_table("audit_logs") as batch:
        for name, type_ in SEALED_COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=True)
        batch.create_check_constraint(op.f("ck_audit_logs_sealed"), SEALED_ALL_OR_NONE)
    op.create_index(
        "ix_audit_logs_unsealed",
        "audit_logs",
        ["chain", "timestamp", "id"],
        sqlite_where=sa.text(UNSEALED),
        postgresql_where=sa.text(UNSEALED),
    )


def downgrade() -> None:
    unsealed = op.get_bind().scalar(sa.text(f"SELECT count(*) FROM audit_logs WHERE {UNSEALED}"))  # noqa: S608
    if unsealed:
        raise RuntimeError(f"{unsealed} audit records are not sealed yet; run `agentkeep audit seal` first")
    op.drop_index("ix_audit_logs_unsealed", table_name="audit_logs")
    with op.batch_alter_table("audit_logs") as batch:
        batch.drop_constraint(op.f("ck_audit_logs_sealed"), type_="check")
        for name, type_ in SEALED_COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=False)
