"""The documentation stays true: every setting is in the README table and .env.example."""

from __future__ import annotations

import re
from pathlib import Path

from agentkeep.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} <= documented


def test_every_setting_is_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} <= named
