"""Expand-then-contract repair: `agents.approvers` and `agents.approval_timeout_seconds` keep
their server defaults.

0014 added both columns NOT NULL with a default for the existing rows, then dropped the
defaults. An instance of the previous release, still serving during a rolling upgrade, does
not know the columns: its inserts of agents then failed on NOT NULL (and were answered as a
taken name). With the defaults back, its agents get what the new release gives an agent that
names no approvers (owner, admin, member; 3600 s). See docs/OPERATIONS.md, "Schema changes".

Revision ID: 0017_agent_approval_defaults
Revises: 0016_user_identities
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agentkeep.db.base import PortableJSON

revision: str = "0017_agent_approval_defaults"
down_revision: str | None = "0016_user_identities"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.alter_column(
            "approvers",
            existing_type=PortableJSON,
            existing_nullable=False,
            server_default=sa.text('\'["owner", "admin", "member"]\''),
        )
        batch.alter_column(
            "approval_timeout_seconds",
            existing_type=sa.Integer(),
            existing_nullable=False,
            server_default="3600",
        )


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.alter_column(
            "approvers", existing_type=PortableJSON, existing_nullable=False, server_default=None
        )
        batch.alter_column(
            "approval_timeout_seconds",
            existing_type=sa.Integer(),
            existing_nullable=False,
            server_default=None,
        )
