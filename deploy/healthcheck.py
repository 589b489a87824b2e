"""Container health probe: GET a health path of the local server; exit 0 only on 200.

Usage: python healthcheck.py [/health/live | /health/ready]

With ALLOWED_HOSTS set the server answers 400 to an unknown Host header, so the probe sends
the first exact (non-wildcard) name of ALLOWED_HOSTS, or `localhost` when there is none.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0


def probe_host() -> str:
    names = [name.strip() for name in os.environ.get("ALLOWED_HOSTS", "").split(",")]
    exact = [name for name in names if name and not name.startswith("*.")]
    return exact[0] if exact else "localhost"


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/health/live"
    if not path.startswith("/health"):
        print(f"refusing to probe {path!r}: only /health paths", file=sys.stderr)
        return 2
    port = os.environ.get("PORT", "8000")
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": probe_host()})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - fixed scheme
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
