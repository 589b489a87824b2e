"""The role table: its invariants, and the copy in docs/SECURITY.md."""

from __future__ import annotations

from pathlib import Path

from agentkeep.rbac.permissions import (
    PERMISSION_DESCRIPTIONS,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    permission_table_markdown,
)

SECURITY_MD = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"


def test_security_doc_embeds_the_current_permission_table() -> None:
    text = SECURITY_MD.read_text()
    start = text.index("<!-- permission-table:start -->") + len("<!-- permission-table:start -->")
    end = text.index("<!-- permission-table:end -->")
    assert text[start:end].strip() == permission_table_markdown()


def test_every_role_and_permission_is_described() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert set(PERMISSION_DESCRIPTIONS) == set(Permission)


def test_owner_holds_everything_and_roles_nest() -> None:
    assert ROLE_PERMISSIONS[Role.OWNER] == frozenset(Permission)
    assert ROLE_PERMISSIONS[Role.VIEWER] < ROLE_PERMISSIONS[Role.MEMBER] < ROLE_PERMISSIONS[Role.ADMIN]
    assert ROLE_PERMISSIONS[Role.ADMIN] < ROLE_PERMISSIONS[Role.OWNER]


def test_auditor_reads_the_audit_log_and_writes_nothing() -> None:
    auditor = ROLE_PERMISSIONS[Role.AUDITOR]
    assert Permission.AUDIT_READ in auditor
    # `threads:read_all` widens what the auditor reads; it changes nothing.
    writes = {p for p in Permission if not p.value.split(":")[1].startswith("read")}
    assert auditor.isdisjoint(writes)


def test_only_owners_manage_the_organization() -> None:
    assert [role for role in Role if Permission.ORG_MANAGE in ROLE_PERMISSIONS[role]] == [Role.OWNER]
