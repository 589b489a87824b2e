"""Response bodies of the /auth/oidc endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ProviderRead(BaseModel):
    name: str = Field(description="Used in the paths: /auth/oidc/{name}/login.")
    display_name: str
    login_url: str = Field(description="Open in a browser to sign in with this provider.")
