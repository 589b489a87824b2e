"""The CLI as an operator runs it: real subprocesses, real exit codes."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import run_agentkeep, run_logged


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_agentkeep(*args, cwd=cwd, env=env, timeout=timeout, input=input)


def run_python(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """This interpreter with `args`, in a clean environment (no settings but `env`)."""
    return run_logged([sys.executable, *args], name="python", cwd=cwd, env=env, timeout=timeout, input=input)


def test_gen_secret_prints_a_fresh_secret_that_the_config_accepts(tmp_path: Path) -> None:
    first = run_cli("gen-secret", cwd=tmp_path).stdout.strip()
    second = run_cli("gen-secret", cwd=tmp_path).stdout.strip()
    assert first != second
    assert len(first) >= 48
    checked = run_cli("check-config", cwd=tmp_path, env={"JWT_SECRET": first})
    assert checked.returncode == 0, checked.stderr


def test_serve_with_a_short_secret_exits_non_zero_naming_the_rule(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "0", cwd=tmp_path, env={"JWT_SECRET": "short"})
    assert result.returncode == 78
    assert "JWT_SECRET" in result.stderr
    assert "32 characters" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_prints_effective_settings_with_secrets_redacted(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(40)
    env = {
        "JWT_SECRET": secret,
        "DATABASE_URL": "postgresql://app:hunter2hunter2@db/app",
        "DB_POOL_SIZE": "11",
    }
    result = run_cli("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["DB_POOL_SIZE"] == 11
    assert secret not in result.stdout
    assert "hunter2hunter2" not in result.stdout


def test_check_config_lists_all_problems_and_fails(tmp_path: Path) -> None:
    env = {"JWT_SECRET": "changeme", "CORS_ORIGINS": "*", "REDIS_URL": "http://nope"}
    result = run_cli("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 78
    for name in ("JWT_SECRET", "CORS_ORIGINS", "REDIS_URL"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_dotenv_file_is_read_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"JWT_SECRET={secrets.token_urlsafe(40)}\nDB_POOL_SIZE=9\n")
    result = run_cli("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["DB_POOL_SIZE"] == 9


def test_migrate_creates_the_sqlite_schema_from_nothing(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, env={"JWT_SECRET": secrets.token_urlsafe(40)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "agentkeep.db").stat().st_size > 0


@pytest.mark.parametrize("command", ["--help", "serve --help", "migrate --help"])
def test_help_is_available(tmp_path: Path, command: str) -> None:
    result = run_cli(*command.split(), cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage" in result.stdout


@pytest.mark.parametrize(
    ("module", "app", "command"),
    [("agentkeep.audit.cli", "audit_cli", "seal"), ("agentkeep.providers.cli", "providers_cli", "reencrypt")],
)
def test_a_domain_cli_runs_without_importing_the_root_cli(
    tmp_path: Path, module: str, app: str, command: str
) -> None:
    # A fresh interpreter runs the domain's own typer app up to its settings check (an unsafe
    # secret refuses with 78), then reports whether the root CLI was ever imported.
    probe = (
        "import sys, atexit, typer.main\n"
        "atexit.register(lambda: print('agentkeep.cli' in sys.modules))\n"
        f"from {module} import {app}\n"
        f"typer.main.get_group({app})([{command!r}])\n"
    )
    result = run_python("-c", probe, cwd=tmp_path, env={"JWT_SECRET": "short"})
    assert result.returncode == 78, result.stderr
    assert "JWT_SECRET" in result.stderr
    assert result.stdout.strip() == "False"


def test_the_root_cli_assembles_the_domain_commands(tmp_path: Path) -> None:
    for group, command in (("audit", "verify"), ("providers", "reencrypt")):
        result = run_cli(group, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert command in result.stdout
