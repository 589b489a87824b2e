"""Organizations, memberships, and the organization a login session acts in.

Existing users get their personal organization (owner), as registration now creates one.

Revision ID: 0004_orgs
Revises: 0003_audit
Create Date: 2026-11-29
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from agentkeep.db.base import UTCDateTime

revision: str = "0004_orgs"
down_revision: str | None = "0003_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    organizations = op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("is_personal", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("slug", name=op.f("uq_organizations_slug")),
    )
    memberships = op.create_table(
        "memberships",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_memberships_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.UniqueConstraint("org_id", "user_id", name="uq_memberships_org_id_user_id"),
    )
    op.create_index(op.f("ix_memberships_user_id"), "memberships", ["user_id"], unique=False)
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("org_id", sa.Uuid(), nullable=True))

    users = sa.table("users", sa.column("id", sa.Uuid()), sa.column("username", sa.String()))
    now = datetime.now(UTC)
    connection = op.get_bind()
    for user_id, username in connection.execute(sa.select(users.c.id, users.c.username)).all():
        org_id = uuid.uuid4()
        connection.execute(
            organizations.insert().values(
                id=org_id,
                name=username,
                slug=f"~{username}",
                is_personal=True,
                created_at=now,
                updated_at=now,
            )
        )
        connection.execute(
            memberships.insert().values(
                id=uuid.uuid4(), org_id=org_id, user_id=user_id, role="owner", created_at=now
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("org_id")
    op.drop_index(op.f("ix_memberships_user_id"), table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("organizations")
