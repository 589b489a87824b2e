"""The console's static files (our CSS and the vendored htmx), read once per app.

Each is served at `/static/<sha256 prefix>/<path>` with a year-long, immutable cache
lifetime: a changed file has a new URL, so a browser never keeps a stale copy. Any other
URL under /static answers 404.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
# Documentation of the vendored files, not something a page loads.
NOT_SERVED = frozenset({"vendor/VENDORED.md"})
CACHE_FOREVER = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    digest: str


class StaticAssets:
    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self._assets: dict[str, Asset] = {}
        for path in sorted(directory.rglob("*")):
            name = path.relative_to(directory).as_posix()
            if not path.is_file() or name in NOT_SERVED:
                continue
            body = path.read_bytes()
            media_type = mimetypes.guess_type(name)[0] or "text/plain"
            if media_type.startswith("text/") or media_type == "application/javascript":
                media_type += "; charset=utf-8"
            self._assets[name] = Asset(body, media_type, hashlib.sha256(body).hexdigest()[:16])

    def url(self, name: str) -> str:
        """The URL of a static file (a KeyError for an unknown one: a template bug)."""
        return f"/static/{self._assets[name].digest}/{name}"

    def find(self, digest: str, name: str) -> Asset | None:
        asset = self._assets.get(name)
        return asset if asset is not None and asset.digest == digest else None
