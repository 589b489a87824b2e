"""The audit tables: the hash-chained records and one head row per chain.

A record is inserted unsealed (sequence, prev_hash and hash NULL) in the transaction of the
change it describes; the sealer (sealing.py) fills those three columns once, shortly after.
Under AUDIT_HMAC_KEY a record also carries its key id and insert MAC (keys.py); a record
whose MAC does not verify is never sealed: the sealer names the reason in seal_refused.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from agentkeep.db.base import Base, PortableJSON, UUIDPrimaryKey

GLOBAL_CHAIN = "global"
# prev_hash of the first record of a chain (and the anchor of a chain never pruned).
GENESIS_HASH = "0" * 64

CHAIN_MAX = 64
ACTION_MAX = 64
RESOURCE_TYPE_MAX = 64
RESOURCE_ID_MAX = 128
IP_MAX = 45
USER_AGENT_MAX = 512
REQUEST_ID_MAX = 128
HASH_LENGTH = 64
KEY_ID_LENGTH = 16
REFUSAL_MAX = 32


# Pending records are found through a partial index that holds only them.
UNSEALED = "sequence IS NULL"
_SEALED_ALL_OR_NONE = (
    "(sequence IS NULL AND prev_hash IS NULL AND hash IS NULL)"
    " OR (sequence IS NOT NULL AND prev_hash IS NOT NULL AND hash IS NOT NULL)"
)


class AuditLog(UUIDPrimaryKey, Base):
    """One audit record. Rows are inserted, sealed once, and pruned oldest-first; never edited.

    user_id and org_id carry no foreign key on purpose: a record must outlive the user or
    organization it names, and deleting either must never cascade into the audit trail.
    """

    __tablename__ = "audit_logs"

    chain: Mapped[str] = mapped_column(String(CHAIN_MAX))
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    timestamp: Mapped[datetime]
    user_id: Mapped[uuid.UUID | None]
    org_id: Mapped[uuid.UUID | None]
    actor_type: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(ACTION_MAX))
    resource_type: Mapped[str | None] = mapped_column(String(RESOURCE_TYPE_MAX))
    resource_id: Mapped[str | None] = mapped_column(String(RESOURCE_ID_MAX))
    status: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    ip_address: Mapped[str | None] = mapped_column(String(IP_MAX))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX))
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_MAX))
    prev_hash: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    hash: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    # NULL on records written without AUDIT_HMAC_KEY (and on every record before 0009).
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH))
    mac: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    seal_refused: Mapped[str | None] = mapped_column(String(REFUSAL_MAX))

    __table_args__ = (
        UniqueConstraint("chain", "sequence", name="uq_audit_logs_chain_sequence"),
        CheckConstraint("status IN ('success', 'failure', 'denied')", name="status"),
        CheckConstraint("actor_type IN ('user', 'api_key', 'system')", name="actor_type"),
        CheckConstraint(_SEALED_ALL_OR_NONE, name="sealed"),
        # The sealer's queue: unsealed records of a chain in sealing order.
        Index(
            "ix_audit_logs_unsealed",
            "chain",
            "timestamp",
            "id",
            postgresql_where=text(UNSEALED),
            sqlite_where=text(UNSEALED),
        ),
        # Newest-first listing and keyset pagination on (timestamp, id), alone or per filter.
        Index("ix_audit_logs_timestamp_id", "timestamp", "id"),
        Index("ix_audit_logs_user_id_timestamp", "user_id", "timestamp"),
        Index("ix_audit_logs_org_id_timestamp", "org_id", "timestamp"),
        Index("ix_audit_logs_action_timestamp", "action", "timestamp"),
        Index("ix_audit_logs_resource_timestamp", "resource_type", "resource_id", "timestamp"),
        Index("ix_audit_logs_ip_address_timestamp", "ip_address", "timestamp"),
    )


class AuditChainHead(Base):
    """The newest sealed sequence and hash of a chain; only a sealer (or prune) locks it.

    prev_hash is the hash before the newest record.

    pruned_sequence / pruned_hash anchor a pruned chain: the oldest remaining record must
    follow them (GENESIS_HASH and 0 for a chain never pruned).
    """

    __tablename__ = "audit_chain_heads"

    chain: Mapped[str] = mapped_column(String(CHAIN_MAX), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    pruned_sequence: Mapped[int] = mapped_column(BigInteger)
    pruned_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
