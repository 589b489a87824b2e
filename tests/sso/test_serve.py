"""The whole browser flow against a real `agentkeep serve` process: one HTTP client with a
cookie jar follows every redirect, AgentKeep -> the provider's login form -> AgentKeep."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.sso.peer import CLIENT_ID, new_client_secret, running_provider
from tests.support.server import running_server
from tests.support.throwaway import free_port

pytestmark = pytest.mark.slow

FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


def test_a_browser_signs_in_through_the_provider_against_a_real_server(tmp_path: Path) -> None:
    provider_port = free_port()
    issuer = f"http://127.0.0.1:{provider_port}"
    secret = new_client_secret()
    providers = [
        {
            "name": "corp",
            "display_name": "Corp",
            "issuer": issuer,
            "client_id": CLIENT_ID,
            "client_secret_env": "CORP_OIDC_SECRET",
            "scopes": ["openid", "email", "profile", "groups"],
        }
    ]
    env = {
        "OIDC_PROVIDERS": json.dumps(providers),
        "CORP_OIDC_SECRET": secret,
        "OIDC_ALLOWED_NETWORKS": "127.0.0.1",
    }
    with running_server(env) as server:
        callback = f"{server.base_url}/auth/oidc/corp/callback"
        with running_provider(tmp_path, [callback], port=provider_port, client_secret=secret) as provider:
            provider.add_user("paula", email="paula@example.com")
            with httpx.Client(follow_redirects=True, timeout=60) as browser:
                form_page = browser.get(f"{server.base_url}/auth/oidc/corp/login")
                assert str(form_page.url).startswith(issuer), form_page.text
                action = FORM_ACTION.search(form_page.text)
                assert action is not None
                answer = browser.post(
                    urljoin(str(form_page.url), action.group(1)),
                    data={"prompt": "login", "login": "paula", "password": "anything"},
                )
                assert answer.url == httpx.URL(callback).copy_with(query=answer.url.query)
                assert answer.status_code == 200, answer.text
                tokens = answer.json()
                bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
                me = browser.get(f"{server.base_url}/auth/me", headers=bearer)
            assert me.json()["username"] == "paula"
        assert secret not in server.log()
