"""The runbook of docs/OPERATIONS.md ("nginx in front of several instances"), as commands the
tests run with bash exactly as written."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"
RUNBOOK_HEADING = "### nginx in front of several instances (runbook)"


def runbook_blocks() -> list[list[str]]:
    """The shell blocks of the runbook section, each as its commands (comments dropped,
    continued lines joined), in the order the section gives them."""
    section = OPERATIONS.read_text().split(RUNBOOK_HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        joined = re.sub(r"\\\n\s*", "", block)
        blocks.append(
            [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        )
    return blocks


async def run_runbook(command: str, env: dict[str, str]) -> str:
    """One runbook command, run by bash as written, in the deployment's environment."""
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,  # the readiness loop waits for a starting instance
        check=False,
    )
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout + result.stderr
