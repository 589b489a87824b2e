"""The key that created an API key: `api_keys.parent_key_id`, so revoking a key can revoke
every key created through it.

NULL for a key a user created through a login session, and for every key that existed
before this revision (their lineage was never recorded). Indexed: revocation walks a key's
children by it.

Revision ID: 0010_api_key_parent
Revises: 0009_audit_mac
Create Date: 2026-12-16
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_api_key_parent"
down_revision: str | None = "0009_audit_mac"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("parent_key_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_api_keys_parent_key_id_api_keys"),
            "api_keys",
            ["parent_key_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(op.f("ix_api_keys_parent_key_id"), ["parent_key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index(op.f("ix_api_keys_parent_key_id"))
        batch.drop_constraint(op.f("fk_api_keys_parent_key_id_api_keys"), type_="foreignkey")
        batch.drop_column("parent_key_id")
