"""Thread turns: runs that belong to a thread, and the thread's model-level history.

- `runs.thread_id`, `runs.thread_turn`: a turn's thread and its number there (unique per
  thread); NULL for single-shot runs and for every run that existed before this revision.
  A deleted thread leaves its runs (SET NULL).
- `threads.turn_count`: turns started so far (0 for existing threads, which had none).
- `thread_messages`: pydantic-ai messages of each turn, numbered per thread.

Revision ID: 0012_thread_turns
Revises: 0011_threads
Create Date: 2026-12-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agentkeep.db.base import PortableJSON, UTCDateTime

revision: str = "0012_thread_turns"
down_revision: str | None = "0011_threads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("threads") as batch:
        batch.add_column(sa.Column("turn_count", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("threads") as batch:
        batch.alter_column("turn_count", server_default=None)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("thread_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("thread_turn", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_runs_thread_id_threads"), "threads", ["thread_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_runs_thread_id_thread_turn", ["thread_id", "thread_turn"], unique=True)
    op.create_table(
        "thread_messages",
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message", PortableJSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["threads.id"],
            name=op.f("fk_thread_messages_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_thread_messages_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("thread_id", "seq", name=op.f("pk_thread_messages")),
    )
    op.create_index("ix_thread_messages_run_id", "thread_messages", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_thread_messages_run_id", table_name="thread_messages")
    op.drop_table("thread_messages")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_thread_id_thread_turn")
        batch.drop_constraint(op.f("fk_runs_thread_id_threads"), type_="foreignkey")
        batch.drop_column("thread_turn")
        batch.drop_column("thread_id")
    with op.batch_alter_table("threads") as batch:
        batch.drop_column("turn_count")
