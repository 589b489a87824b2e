"""Keyed audit records: each record's key id and insert MAC, and the sealer's refusal.

Under AUDIT_HMAC_KEY the application stores with each record the id of the key it used and
an HMAC over the record's canonical insert form; the sealer chains only records whose MAC
verifies and marks the others with the reason (`seal_refused`), leaving them unsealed.
Existing records keep NULL in all three columns: they stay verifiable by SHA-256.

Revision ID: 0009_audit_mac
Revises: 0008_audit_sealing
Create Date: 2026-12-14
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_audit_mac"
down_revision: str | None = "0008_audit_sealing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("key_id", sa.String(16)), ("mac", sa.String(64)), ("seal_refused", sa.String(32)))


def upgrade() -> None:
    with op.batch_alter_table("audit_logs") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    keyed = op.get_bind().scalar(sa.text("SELECT count(*) FROM audit_logs WHERE key_id IS NOT NULL"))
    if keyed:
        # Their chain links are keyed: without these columns they could never verify again.
        raise RuntimeError(f"{keyed} audit records are keyed; they cannot be kept without 0009")
    with op.batch_alter_table("audit_logs") as batch:
        for name, _type in COLUMNS:
            batch.drop_column(name)
