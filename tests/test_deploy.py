"""The deployment files and docs/OPERATIONS.md name only what the code really has."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from agentkeep.cli import cli
from agentkeep.config import Settings, load_settings
from tests.support.server import running_server

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
# Read by `agentkeep serve` (options with envvar) and by the container, not Settings fields.
SERVE_VARIABLES = {"HOST", "PORT", "WEB_CONCURRENCY"}
# Documented as arriving with a later issue, and said so where it is named.
FUTURE_COMMANDS: set[str] = set()


def _settings_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields} | SERVE_VARIABLES


def _yaml(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_env_files_and_compose_name_only_real_settings() -> None:
    known = _settings_names()
    for name in ("agentkeep.env.example",):
        for line in (DEPLOY / name).read_text().splitlines():
            match = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=", line)
            if match:
                assert match.group(1) in known, f"{name}: {match.group(1)}"
    compose = _yaml("docker-compose.yml")
    for service in ("migrate", "api", "worker"):
        for variable in compose["services"][service].get("environment", {}):
            assert variable in known, f"docker-compose.yml {service}: {variable}"


def test_operations_example_environment_is_accepted_by_the_production_profile() -> None:
    doc = OPERATIONS.read_text()
    block = doc.split("### A complete production environment", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    values = dict(line.split("=", 1) for line in block.strip().splitlines() if line and "=" in line)
    assert set(values) <= _settings_names()
    filled = {
        name: value
        for name, value in values.items()
        if name not in SERVE_VARIABLES and not value.startswith("<output of")
    }
    filled["DATABASE_URL"] = "postgresql+asyncpg://agentkeep:pw@db.internal:5432/agentkeep"
    filled["REDIS_URL"] = "redis://redis.internal:6379/0"
    filled["OPENAI_API_KEY"] = "sk-test"
    from agentkeep.security.secretbox import generate_key

    secrets = {
        "JWT_SECRET": "Kx9-fT2qLm7vR4wZ8yB1nC6dE3gH5jP0sU",
        "AUDIT_HMAC_KEY": "Zq8-W3eR7tY1uI5oP9aS2dF6gH0jK4lXcVb7NmQ2wE5rT8yU1iO4pA",
        "METRICS_TOKEN": "Mt5-nB8vC2xZ7lK1jH4gF9dS3aP6oI0uY",
        "SECRETS_ENCRYPTION_KEYS": generate_key(),
    }
    settings = load_settings(
        _env_file=None, **{name.lower(): value for name, value in {**filled, **secrets}.items()}
    )
    assert settings.environment == "production"


def test_operations_doc_names_only_real_commands() -> None:
    commands: dict[str, Any] = getattr(typer.main.get_command(cli), "commands")  # noqa: B009
    audit: dict[str, Any] = getattr(commands["audit"], "commands")  # noqa: B009
    doc = OPERATIONS.read_text()
    for command, sub in re.findall(
        r"(?<![\w=/-])(?<!: )agentkeep\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?", doc
    ):
        if command in FUTURE_COMMANDS:
            continue
        assert command in commands, f"agentkeep {command}"
        if command == "audit":
            assert sub in audit, f"agentkeep audit {sub}"


def test_nginx_body_limit_matches_max_body_bytes() -> None:
    match = re.search(r"client_max_body_size (\d+)m;", (DEPLOY / "nginx.conf").read_text())
    assert match
    default = Settings.model_fields["max_body_bytes"].default
    assert int(match.group(1)) * 1024 * 1024 == default
    example = (DEPLOY / "agentkeep.env.example").read_text()
    assert f"MAX_BODY_BYTES={default}" in example


@pytest.mark.slow
def test_container_healthcheck_probes_with_an_allowed_host() -> None:
    allowed = "*.example.org,agents.example.com"
    with running_server({"ALLOWED_HOSTS": allowed}) as server:
        port = server.base_url.rsplit(":", 1)[1]
        probe = [sys.executable, str(DEPLOY / "healthcheck.py")]
        env = {**os.environ, "PORT": port, "ALLOWED_HOSTS": allowed}
        for path in ("/health/live", "/health/ready"):
            assert subprocess.run([*probe, path], env=env, timeout=30, check=False).returncode == 0
        # A Host outside ALLOWED_HOSTS is refused, so the probe must pick an allowed one.
        wrong = {**env, "ALLOWED_HOSTS": "other.example.net"}
        result = subprocess.run(
            [*probe, "/health/live"], env=wrong, timeout=30, check=False, capture_output=True
        )
        assert result.returncode == 1
