"""Approval of tool calls: agents name who approves and how long a run waits; a paused run
keeps its messages, usage and pending calls.

- `agents.approvers` (roles; existing agents get owner, admin, member) and
  `agents.approval_timeout_seconds` (existing agents: 3600).
- `run_approvals`: one row per run that paused for approval (messages, usage, deadline).
- `run_approval_calls`: each call that asked for approval, with its decision.

Revision ID: 0014_run_approvals
Revises: 0013_mcp_servers
Create Date: 2027-01-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agentkeep.db.base import PortableJSON, UTCDateTime

revision: str = "0014_run_approvals"
down_revision: str | None = "0013_mcp_servers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column(
                "approvers",
                PortableJSON,
                nullable=False,
                server_default=sa.text('\'["owner", "admin", "member"]\''),
            )
        )
        batch.add_column(
            sa.Column("approval_timeout_seconds", sa.Integer(), nullable=False, server_default="3600")
        )
    with op.batch_alter_table("agents") as batch:
        batch.alter_column("approvers", server_default=None)
        batch.alter_column("approval_timeout_seconds", server_default=None)
    op.create_table(
        "run_approvals",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("messages", PortableJSON, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("paused_at", UTCDateTime(), nullable=False),
        sa.Column("deadline", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_approvals_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_run_approvals_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_approvals")),
    )
    op.create_index("ix_run_approvals_state_deadline", "run_approvals", ["state", "deadline"], unique=False)
    op.create_table(
        "run_approval_calls",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("tool_call_id", sa.String(length=200), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(length=240), nullable=False),
        sa.Column("args", PortableJSON, nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("decided_by_key", sa.Uuid(), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["run_approvals.run_id"],
            name=op.f("fk_run_approval_calls_run_id_run_approvals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.id"],
            name=op.f("fk_run_approval_calls_decided_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_key"],
            ["api_keys.id"],
            name=op.f("fk_run_approval_calls_decided_by_key_api_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("run_id", "tool_call_id", name=op.f("pk_run_approval_calls")),
    )


def downgrade() -> None:
    op.drop_table("run_approval_calls")
    op.drop_index("ix_run_approvals_state_deadline", table_name="run_approvals")
    op.drop_table("run_approvals")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("approval_timeout_seconds")
        batch.drop_column("approvers")
