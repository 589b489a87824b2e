"""Real protocol peers from Debian's packages (nginx, promtool, Chromium, ...).

`.ci/install-peers` installs them in CI. A test that needs one and does not find it skips
locally and fails when AGENTKEEP_TEST_REQUIRE_SERVICES is set (CI), like every test that
needs PostgreSQL or Redis: a peer that cannot start is a failure there, never a skip.
"""

from __future__ import annotations

import shutil

from tests.support.databases import unavailable


def require_binary(name: str, *fallbacks: str) -> str:
    """The path of the peer's executable, looked up on PATH and then at `fallbacks`."""
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate)
        if found:
            return found
    return unavailable(f"`{name}` (see .ci/debian-packages.txt)")
