"""Settings for command-line commands: a refused configuration exits 78 with every problem listed.

Shared by the root CLI and the domain CLIs, so neither has to import the other.
"""

from __future__ import annotations

from typing import NoReturn

import typer

from agentkeep.config import ConfigError, Settings, load_settings

# sysexits.h EX_CONFIG: distinguishes an unsafe configuration from a usage error (2).
EXIT_CONFIG = 78


def refuse(error: ConfigError) -> NoReturn:
    typer.echo(error.render(), err=True)
    raise typer.Exit(EXIT_CONFIG)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        refuse(error)
