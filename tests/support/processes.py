"""Run `agentkeep` subprocesses whose whole output the secret scan reads at the end of the run."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentkeep.config import Settings
from tests.support.secret_scan import current_scan

AGENTKEEP = (sys.executable, "-m", "agentkeep")
# Environment variables and options through which the tests hand a process a credential.
SECRET_VARIABLES = ("AGENTKEEP_ADMIN_PASSWORD", "OPENAI_API_KEY")
SECRET_OPTIONS = ("--password", "--api-key")


def clean_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Nothing from the operator's shell that is a setting: the process gets exactly `env`."""
    base = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    base.update(env or {})
    return base


def process_log(name: str) -> Path:
    """A file for one process's output: in the scan's run directory, or a temporary one."""
    scan = current_scan()
    if scan is not None:
        return scan.process_log(name)
    return Path(tempfile.mkdtemp(prefix="agentkeep-process-")) / f"{name}.log"


def remember_credentials(args: Sequence[str], env: Mapping[str, str], input: str | None = None) -> None:
    """Make the scan search for the credentials handed to a process."""
    scan = current_scan()
    if scan is None:
        return
    for name in SECRET_VARIABLES:
        scan.remember(env.get(name), f"{name} of a process")
    for option, value in itertools.pairwise(args):
        if option in SECRET_OPTIONS:
            scan.remember(value, f"{option} of a process")
    for line in (input or "").splitlines():
        scan.remember(line, "input typed into a process")


def run_logged(
    command: Sequence[str],
    *,
    name: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a process to completion; its output also goes to a log file for the scan."""
    full_env = clean_environment(env)
    remember_credentials(command, full_env, input)
    result = subprocess.run(
        list(command),
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=input,
    )
    process_log(name).write_text(result.stdout + result.stderr)
    return result


def run_agentkeep(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion, as an operator would."""
    name = f"agentkeep-{args[0]}" if args else "agentkeep"
    return run_logged([*AGENTKEEP, *args], name=name, cwd=cwd, env=env, timeout=timeout, input=input)
