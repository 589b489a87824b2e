"""The real OpenID provider of the SSO tests: panva/oidc-provider in its own Node.js process.

`tests/sso/openid_provider/` holds its package.json, lock and configuration (server.mjs);
`make sso-provider` (and CI) install it with `npm ci`. Each process makes its own signing
key; `clock_offset` runs it under libfaketime (Debian `faketime`), so its clock and
therefore its tokens' iat/exp are off by that much, as a provider with a wrong clock would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.databases import unavailable
from tests.support.peers import require_binary
from tests.support.processes import process_log
from tests.support.secret_scan import current_scan
from tests.support.throwaway import free_port

PROVIDER_DIR = Path(__file__).parent / "openid_provider"
CLIENT_ID = "agentkeep"
OTHER_CLIENT_ID = "another-app"
START_TIMEOUT = 30.0


def new_client_secret() -> str:
    secret = secrets.token_urlsafe(32)
    scan = current_scan()
    if scan is not None:
        scan.remember(secret, "OIDC client secret of the test provider")
    return secret


@dataclass
class OpenIdProvider:
    issuer: str
    url: str
    accounts_file: Path
    client_secret: str
    other_client_secret: str
    process: subprocess.Popen[bytes] | None = None
    accounts: dict[str, Any] = field(default_factory=dict)

    def add_user(
        self,
        login: str,
        *,
        email: str | None = None,
        email_verified: bool = True,
        groups: list[str] | None = None,
    ) -> str:
        """An account at the provider (found again by `login` in its login form); its subject
        (oidc-provider uses the account id as the subject)."""
        self.accounts[login] = {
            "claims": {
                "email": email or f"{login}@example.com",
                "email_verified": email_verified,
                "preferred_username": login,
                "name": login.title(),
                "groups": groups or [],
            },
        }
        self._write()
        return login

    def set_groups(self, login: str, groups: list[str]) -> None:
        self.accounts[login]["claims"]["groups"] = groups
        self._write()

    def _write(self) -> None:
        temporary = self.accounts_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.accounts), encoding="utf-8")
        temporary.replace(self.accounts_file)  # the provider never reads half a file


def require_provider_installed() -> None:
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        unavailable("oidc-provider (run `make sso-provider`: npm ci in tests/sso/openid_provider)")


@contextlib.contextmanager
def running_provider(
    directory: Path,
    redirect_uris: list[str],
    *,
    issuer: str | None = None,
    port: int | None = None,
    clock_offset: str | None = None,
    id_token_ttl: int = 600,
    client_secret: str | None = None,
) -> Iterator[OpenIdProvider]:
    """Start a provider on a loopback port; `issuer` defaults to its own URL."""
    node = require_binary("node", "nodejs")
    require_provider_installed()
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    directory.mkdir(parents=True, exist_ok=True)
    provider = OpenIdProvider(
        issuer=issuer or url,
        url=url,
        accounts_file=directory / f"accounts-{port}.json",
        client_secret=client_secret or new_client_secret(),
        other_client_secret=new_client_secret(),
    )
    provider._write()
    config = directory / f"provider-{port}.json"
    config.write_text(
        json.dumps(
            {
                "issuer": provider.issuer,
                "port": port,
                "accounts_file": str(provider.accounts_file),
                "id_token_ttl": id_token_ttl,
                "clients": [
                    {
                        "client_id": CLIENT_ID,
                        "client_secret": provider.client_secret,
                        "redirect_uris": redirect_uris,
                    },
                    {
                        "client_id": OTHER_CLIENT_ID,
                        "client_secret": provider.other_client_secret,
                        "redirect_uris": redirect_uris,
                    },
                ],
            }
        ),
        encoding="utf-8",
    )
    command = [node, str(PROVIDER_DIR / "server.mjs"), str(config)]
    if clock_offset is not None:
        command = [require_binary("faketime"), "-f", clock_offset, *command]
    log = process_log(f"openid-provider-{port}")
    with log.open("wb") as output:
        # A group of its own: under faketime, node is faketime's child, and stopping only
        # faketime would leave the provider running after the test.
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=PROVIDER_DIR, start_new_session=True
        )
    provider.process = process
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while b"ready " not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the OpenID provider did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield provider
    finally:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        # The group's other members (node under faketime) end with their leader's signal.
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
