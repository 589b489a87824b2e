"""No secret reaches an audit record or a log line, and CR/LF never forge a log line."""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkeep.app import create_app
from agentkeep.audit.actions import AuditAction, AuditStatus
from agentkeep.audit.service import AuditDep
from agentkeep.config import Settings

PASSWORD = "correct-horse-battery-staple-9"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlc2lnbmF0dXJlc2ln"
API_KEY = "ak_live_9f8e7d6c5b4a39281706"
REFRESH = "rt-7d1c3a5f9e2b4c6d8a0f1e3d5c7b9a1f"
SECRETS = (PASSWORD, JWT, API_KEY, REFRESH, "c2lnbmF0dXJl", "9f8e7d6c5b4a")


async def test_secrets_in_any_field_are_never_stored_or_logged(
    settings: Settings, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings)

    @app.post("/_test/event")
    async def event(audit: AuditDep) -> None:
        await audit.record(
            AuditAction.PASSWORD_CHANGED,
            resource_type="user",
            resource_id=f"user {JWT}",
            details={
                "password": PASSWORD,
                "form": {"new_password": PASSWORD, "refresh_token": REFRESH},
                "headers": {"Authorization": f"Bearer {JWT}", "X-Api-Key": API_KEY},
                "note": f"pasted {API_KEY} and {JWT} into a field",
                "username": "ann\r\n2026-01-01 [info] forged_event admin=true",
            },
        )

    @app.post("/_test/failure")
    async def failure(audit: AuditDep) -> None:
        audit.failure(AuditAction.LOGIN_FAILED, status=AuditStatus.FAILURE, details={"password": PASSWORD})

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"user-agent": f"scanner Bearer {JWT}", "authorization": f"Bearer {JWT}"}
            assert (await http.post("/_test/event", headers=headers)).status_code == 200
            assert (await http.post("/_test/failure", headers=headers)).status_code == 200

    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM audit_logs"))).all()
    assert len(rows) == 2
    stored = "\n".join(str(tuple(row)) for row in rows)
    logged = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in stored
        assert secret not in logged.out + logged.err
    assert "forged_event" in stored  # kept as data...
    output = logged.out + logged.err
    assert "\nforged_event" not in output
    assert "] forged_event" not in output


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_logged_exceptions_never_show_local_variables(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    import structlog

    from agentkeep.observability.logging import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", fmt)

        def login(password: str) -> None:
            raise RuntimeError("boom")

        try:
            login(PASSWORD)
        except RuntimeError:
            structlog.get_logger("test").exception("request_failed")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    output = capsys.readouterr().err
    assert "RuntimeError: boom" in output
    assert PASSWORD not in output
