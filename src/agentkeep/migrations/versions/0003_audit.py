"""Create the hash-chained audit log and the chain head table.

Revision ID: 0003_audit
Revises: 0001_users
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agentkeep.db.base import PortableJSON, UTCDateTime

revision: str = "0003_audit"
down_revision: str | None = "0002_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=True),
        sa.Column("resource_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("details", PortableJSON, nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_logs")),
        sa.UniqueConstraint("chain", "sequence", name="uq_audit_logs_chain_sequence"),
        sa.CheckConstraint("status IN ('success', 'failure', 'denied')", name=op.f("ck_audit_logs_status")),
        sa.CheckConstraint(
            "actor_type IN ('user', 'api_key', 'system')", name=op.f("ck_audit_logs_actor_type")
        ),
    )
    op.create_index("ix_audit_logs_timestamp_id", "audit_logs", ["timestamp", "id"])
    op.create_index("ix_audit_logs_user_id_timestamp", "audit_logs", ["user_id", "timestamp"])
    op.create_index("ix_audit_logs_org_id_timestamp", "audit_logs", ["org_id", "timestamp"])
    op.create_index("ix_audit_logs_action_timestamp", "audit_logs", ["action", "timestamp"])
    op.create_index(
        "ix_audit_logs_resource_timestamp", "audit_logs", ["resource_type", "resource_id", "timestamp"]
    )
    op.create_index("ix_audit_logs_ip_address_timestamp", "audit_logs", ["ip_address", "timestamp"])

    heads = op.create_table(
        "audit_chain_heads",
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("pruned_sequence", sa.BigInteger(), nullable=False),
        sa.Column("pruned_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_chain_heads")),
    )
    op.bulk_insert(
        heads,
        [
            {
                "chain": "global",
                "sequence": 0,
                "hash": GENESIS_HASH,
                "prev_hash": GENESIS_HASH,
                "pruned_sequence": 0,
                "pruned_hash": GENESIS_HASH,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("audit_chain_heads")
    op.drop_index("ix_audit_logs_ip_address_timestamp", table_name="audit_logs")
    op.drop_index("ix_audit_logs_resource_timestamp", table_name="audit_logs")
    op.drop_index("ix_audit_logs_action_timestamp", table_name="audit_logs")
    op.drop_index("ix_audit_logs_org_id_timestamp", table_name="audit_logs")
    op.drop_index("ix_audit_logs_user_id_timestamp", table_name="audit_logs")
    op.drop_index("ix_audit_logs_timestamp_id", table_name="audit_logs")
    op.drop_table("audit_logs")
