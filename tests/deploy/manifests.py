"""What the deployment assets name: settings, secrets, CLI commands and their options."""

from __future__ import annotations

from typing import Any

import click
import typer.main
from pydantic import SecretStr

from agentkeep.cli import cli
from agentkeep.config import Settings


def settings_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def secret_settings() -> set[str]:
    """Settings whose value is a secret (SecretStr, alone, optional or in a list)."""
    return {
        name.upper()
        for name, field in Settings.model_fields.items()
        if field.annotation is SecretStr or "SecretStr" in str(field.annotation)
    }


def _commands() -> dict[str, click.Command]:
    commands: dict[str, click.Command] = getattr(typer.main.get_command(cli), "commands")  # noqa: B009
    return commands


def command_envvars() -> set[str]:
    """Environment variables the CLI reads itself (HOST, PORT, WEB_CONCURRENCY, ...)."""
    names: set[str] = set()
    for command in _commands().values():
        for param in command.params:
            envvar: Any = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
    return names


def check_command_line(args: list[str]) -> None:
    """Assert `agentkeep ARGS` parses: a real command with real options and valid values."""
    command = _commands()[args[0]]
    context = command.make_context(f"agentkeep {args[0]}", list(args[1:]), resilient_parsing=False)
    context.close()
