"""The hand-written operation table against the app and the docs, and the restated role
table against the docs: the three are kept by different hands, so each checks the others."""

from __future__ import annotations

from collections.abc import Callable

from agentkeep.app import create_app
from agentkeep.config import Settings
from agentkeep.rbac.dependencies import api_routes
from tests.rbac.operations import (
    AUTHENTICATED,
    OPERATIONS,
    PUBLIC,
    ROLE_PERMISSIONS,
    SECURITY_MD,
    SUPERUSER,
    WIDENING,
    documented_operations,
    documented_role_permissions,
)


def _served_operations(make_settings: Callable[..., Settings]) -> set[tuple[str, str]]:
    # Only the inventory (method + path) is read from the app, never its access rules.
    app = create_app(make_settings(api_docs_enabled=True))
    routes, _ = api_routes(app)
    return {(method, route.path) for route in routes for method in route.methods - {"HEAD"}}


def test_the_table_lists_exactly_the_operations_the_app_serves(
    make_settings: Callable[..., Settings],
) -> None:
    served = _served_operations(make_settings)
    assert sorted(served - set(OPERATIONS)) == [], "operations missing from tests/rbac/operations.py"
    assert sorted(set(OPERATIONS) - served) == [], "operations in the table the app does not serve"


def test_security_doc_publishes_the_same_operation_table() -> None:
    assert documented_operations(SECURITY_MD.read_text()) == OPERATIONS


def test_the_restated_role_table_is_the_documented_one() -> None:
    assert documented_role_permissions(SECURITY_MD.read_text()) == ROLE_PERMISSIONS


def test_every_required_permission_is_a_documented_one() -> None:
    documented = frozenset().union(*documented_role_permissions(SECURITY_MD.read_text()).values())
    required = {access for access in OPERATIONS.values() if access not in {PUBLIC, AUTHENTICATED, SUPERUSER}}
    assert required <= documented
    assert required | WIDENING == documented, "a documented permission that no operation requires"
    assert required.isdisjoint(WIDENING)
