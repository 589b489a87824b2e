"""`agentkeep create-admin` as an operator runs it (real subprocesses, so kept few)."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from agentkeep.app import create_app
from agentkeep.config import Settings
from tests.auth.helpers import bearer
from tests.support.databases import migrate
from tests.test_cli import run_cli

ADMIN_PASSWORD = "operator chosen passphrase 9"
ARGS = ("create-admin", "--username", "Root", "--email", "root@example.com")


@pytest.fixture
async def settings_file(tmp_path: Path) -> Settings:
    settings = Settings(
        _env_file=None,
        jwt_secret=secrets.token_urlsafe(40),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}",
    )
    await migrate(settings.database_url)
    return settings


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "DATABASE_URL": settings.database_url,
        **extra,
    }


async def test_create_admin_from_the_environment_makes_a_superuser_once(
    tmp_path: Path, settings_file: Settings
) -> None:
    env = env_of(settings_file, AGENTKEEP_ADMIN_PASSWORD=ADMIN_PASSWORD)
    result = run_cli(*ARGS, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "created administrator root" in result.stderr
    assert ADMIN_PASSWORD not in result.stdout + result.stderr

    async with LifespanManager(create_app(settings_file)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            tokens = await http.post("/auth/login", data={"username": "root", "password": ADMIN_PASSWORD})
            me = await http.get("/auth/me", headers=bearer(tokens.json()["access_token"]))
    assert me.json()["is_superuser"] is True

    again = run_cli(*ARGS, cwd=tmp_path, env=env)
    assert again.returncode == 1
    assert "already registered" in again.stderr
    assert "Traceback" not in again.stderr


def test_create_admin_prompts_with_confirmation(tmp_path: Path, settings_file: Settings) -> None:
    typed = f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"
    result = run_cli(*ARGS, cwd=tmp_path, env=env_of(settings_file), input=typed)
    assert result.returncode == 0, result.stderr


def test_create_admin_applies_the_policy_and_takes_no_password_argument(
    tmp_path: Path, settings_file: Settings
) -> None:
    weak = run_cli(*ARGS, cwd=tmp_path, env=env_of(settings_file, AGENTKEEP_ADMIN_PASSWORD="password1234"))
    assert weak.returncode == 1
    assert "commonly used" in weak.stderr
    as_argument = run_cli(*ARGS, "--password", ADMIN_PASSWORD, cwd=tmp_path, env=env_of(settings_file))
    assert as_argument.returncode == 2
