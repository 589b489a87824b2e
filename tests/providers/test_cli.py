"""`agentkeep providers reencrypt` as an operator runs it during a key rotation."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from agentkeep.config import Settings
from agentkeep.providers.models import Provider
from agentkeep.rbac.permissions import Role
from agentkeep.security.secretbox import SecretBox, generate_key
from tests.orgs.helpers import make_team
from tests.providers.conftest import provider_key
from tests.providers.helpers import create_provider
from tests.test_cli import run_cli


async def run_beside_the_app(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI while the app's event loop keeps turning, as beside a running deployment.

    A blocking call would freeze the app's audit sealer, possibly inside its short write
    transaction, and the command would then wait out SQLite's busy timeout for that lock.
    """
    return await asyncio.to_thread(run_cli, *args, **kwargs)


async def test_reencrypt_rewrites_with_the_newest_key_and_reports_unreadable_ones(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, key_a: str, tmp_path: Path
) -> None:
    team = await make_team(client)
    key = provider_key()
    await create_provider(client, team.org_id, team.headers(Role.OWNER), key)
    env = {"DATABASE_URL": settings.database_url, "JWT_SECRET": settings.jwt_secret.get_secret_value()}

    unset = await run_beside_the_app("providers", "reencrypt", cwd=tmp_path, env=env)
    assert unset.returncode == 78
    assert "SECRETS_ENCRYPTION_KEYS" in unset.stderr

    stranger = await run_beside_the_app(
        "providers", "reencrypt", cwd=tmp_path, env={**env, "SECRETS_ENCRYPTION_KEYS": generate_key()}
    )
    assert stranger.returncode == 1
    assert "unreadable: provider 'default'" in stranger.stderr

    key_b = generate_key()
    done = await run_beside_the_app(
        "providers", "reencrypt", cwd=tmp_path, env={**env, "SECRETS_ENCRYPTION_KEYS": f"{key_b},{key_a}"}
    )
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 provider key(s)" in done.stderr
    for output in (unset, stranger, done):
        assert key not in output.stdout + output.stderr
        assert "Traceback" not in output.stderr
    async with app.state.sessionmaker() as session:
        (stored,) = (await session.scalars(select(Provider.api_key_ciphertext))).all()
    assert SecretBox([key_b]).decrypt(stored) == key
