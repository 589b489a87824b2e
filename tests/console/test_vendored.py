"""The vendored JavaScript is exactly what static/vendor/VENDORED.md lists, byte for byte."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import agentkeep.console

VENDOR = Path(agentkeep.console.__file__).parent / "static" / "vendor"
HASH_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$", re.MULTILINE)


def test_every_vendored_file_matches_its_recorded_sha256() -> None:
    recorded = {name: digest for digest, name in HASH_LINE.findall((VENDOR / "VENDORED.md").read_text())}
    assert {"htmx/htmx.min.js", "htmx-ext-sse/sse.min.js", "htmx/LICENSE", "htmx-ext-sse/LICENSE"} <= set(
        recorded
    )
    present = {path.relative_to(VENDOR).as_posix() for path in VENDOR.rglob("*") if path.is_file()} - {
        "VENDORED.md"
    }
    assert present == set(recorded), "a vendored file is missing from VENDORED.md, or listed but absent"
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_htmx_is_the_2_0_line() -> None:
    table = (VENDOR / "VENDORED.md").read_text()
    assert "| htmx.org | 2.0." in table
    assert 'version:"2.0.' in (VENDOR / "htmx" / "htmx.min.js").read_text()
