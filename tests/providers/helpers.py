"""Calls on /api/orgs/{org_id}/providers shared by the provider tests."""

from __future__ import annotations

from typing import Any

import httpx


def providers_path(org_id: str, provider_id: str | None = None) -> str:
    path = f"/api/orgs/{org_id}/providers"
    return f"{path}/{provider_id}" if provider_id else path


async def create_provider(
    http: httpx.AsyncClient,
    org_id: str,
    headers: dict[str, str],
    api_key: str,
    name: str = "default",
    base_url: str = "https://models.example.com/v1",
) -> dict[str, Any]:
    response = await http.post(
        providers_path(org_id),
        json={"name": name, "base_url": base_url, "api_key": api_key},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
