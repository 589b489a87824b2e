"""Talking to an OpenID provider, through Authlib: discovery, the authorization URL (state,
nonce, PKCE S256), the code exchange, ID token validation and userinfo.

Authlib does the protocol and the validation (signature against the provider's JWKS, `iss`,
`aud`, `exp`, `iat` within OIDC_CLOCK_LEEWAY_SECONDS, `nonce`, `at_hash`); this module only
feeds it the expected values and turns its exceptions into problems a person can act on.
Every request (discovery, token, JWKS, userinfo) goes through the netguard transport: the
provider's addresses must be public unless OIDC_ALLOWED_NETWORKS lists them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.starlette_client import StarletteOAuth2App
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
)

from agentkeep.config import Settings
from agentkeep.sso import errors
from agentkeep.sso.settings import OidcProviderConfig
from agentkeep.tools.context import Resolver, system_resolve
from agentkeep.tools.guarded_transport import EgressRefused, GuardedTransport
from agentkeep.tools.netguard import EgressAllowlist

# The discovery document and JWKS are read again after this long (key rotation is also
# handled at once: a token whose key id is unknown makes Authlib fetch the JWKS again).
DISCOVERY_TTL_SECONDS = 3600.0
WELL_KNOWN = "/.well-known/openid-configuration"
_AUDIENCE_CLAIMS = {"aud", "azp"}
_CLOCK_CLAIMS = {"iat", "nbf"}
# How providers that say why word a PKCE refusal (Keycloak "PKCE verification failed",
# Entra ID "AADSTS501481: The Code_Verifier does not match the code_challenge").
PKCE_WORDS = ("pkce", "code_verifier", "code verifier")


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + WELL_KNOWN


class OidcClient:
    """One configured provider. Built once per process; holds the discovery document."""

    def __init__(
        self,
        config: OidcProviderConfig,
        client_secret: str,
        *,
        allowlist: EgressAllowlist,
        leeway: int,
        timeout: float,
        resolve: Resolver = system_resolve,
    ) -> None:
        self.config = config
        self._secret = client_secret
        self._allowlist = allowlist
        self._resolve = resolve
        self.leeway = leeway
        self.timeout = timeout
        self._app: StarletteOAuth2App | None = None
        self._built_at = 0.0

    def _oauth_app(self) -> StarletteOAuth2App:
        if self._app is None or time.monotonic() - self._built_at > DISCOVERY_TTL_SECONDS:
            self._app = StarletteOAuth2App(
                None,
                name=self.config.name,
                client_id=self.config.client_id,
                client_secret=self._secret,
                server_metadata_url=discovery_url(self.config.issuer),
                client_kwargs={
                    "scope": " ".join(self.config.scopes),
                    "code_challenge_method": "S256",
                    "transport": GuardedTransport(self._allowlist, self._resolve),
                    "timeout": httpx2.Timeout(self.timeout),
                    "follow_redirects": False,
                    "trust_env": False,
                },
            )
            self._built_at = time.monotonic()
        return self._app

    async def _metadata(self) -> dict[str, Any]:
        app = self._oauth_app()
        with _provider_errors():
            metadata: dict[str, Any] = await app.load_server_metadata()
        # OpenID Connect Discovery 4.3: the document must name exactly the configured issuer.
        if metadata.get("issuer") != self.config.issuer:
            self._app = None
            raise errors.WrongIssuer(
                f"The provider's discovery document names the issuer {metadata.get('issuer')!r}, "
                f"not the configured {self.config.issuer!r}: check the issuer in OIDC_PROVIDERS."
            )
        return metadata

    async def authorization_request(self, redirect_uri: str) -> AuthorizationRequest:
        await self._metadata()
        with _provider_errors():
            created = await self._oauth_app().create_authorization_url(redirect_uri)
        return AuthorizationRequest(
            url=created["url"],
            state=created["state"],
            nonce=created["nonce"],
            code_verifier=created["code_verifier"],
        )

    async def exchange(
        self, code: str, *, redirect_uri: str, code_verifier: str, nonce: str
    ) -> dict[str, Any]:
        """Redeem the code; the validated ID token claims, completed from userinfo."""
        await self._metadata()
        app = self._oauth_app()
        try:
            with _provider_errors():
                token = await app.fetch_access_token(
                    redirect_uri=redirect_uri, code=code, code_verifier=code_verifier
                )
        except OAuthError as exc:
            raise _token_endpoint_error(exc) from None
        if "id_token" not in token:
            raise errors.InvalidIdToken("The provider answered without an ID token; is 'openid' in scopes?")
        options = {
            "iss": {"essential": True, "values": [self.config.issuer]},
            "aud": {"essential": True, "values": [self.config.client_id]},
        }
        try:
            with _provider_errors():
                claims = dict(
                    await app.parse_id_token(token, nonce, claims_options=options, leeway=self.leeway)
                )
        except JoseError as exc:
            raise _id_token_error(exc) from None
        return await self._with_userinfo(claims, token)

    async def _with_userinfo(self, claims: dict[str, Any], token: dict[str, Any]) -> dict[str, Any]:
        """Providers put some claims (email, groups) only in userinfo: merge what the ID token
        lacks, from a userinfo answer about the same subject (OIDC Core 5.3.2)."""
        metadata = await self._metadata()
        if not metadata.get("userinfo_endpoint") or "access_token" not in token:
            return claims
        with _provider_errors():
            info = await self._oauth_app().userinfo(token=token)
        if info.get("sub") != claims.get("sub"):
            raise errors.InvalidIdToken("The provider's userinfo is about another subject than the ID token.")
        return {**dict(info), **claims}


@contextmanager
def _provider_errors() -> Iterator[None]:
    """Transport failures become ProviderUnavailable / ProviderError."""
    try:
        yield
    except EgressRefused as exc:
        raise errors.ProviderUnavailable(
            f"The provider's address was refused ({exc}); a provider on a private network "
            "needs OIDC_ALLOWED_NETWORKS to list it."
        ) from None
    except (httpx2.TimeoutException, httpx2.NetworkError):
        raise errors.ProviderUnavailable(
            "The sign-in provider did not answer; try again later.", headers={"Retry-After": "30"}
        ) from None
    except httpx2.HTTPStatusError as exc:
        raise errors.ProviderError(
            f"The sign-in provider answered HTTP {exc.response.status_code}; try again later."
        ) from None
    except (httpx2.HTTPError, ValueError) as exc:
        if isinstance(exc, JoseError):
            raise
        raise errors.ProviderError("The sign-in provider's answer could not be read.") from None


def _token_endpoint_error(exc: OAuthError) -> errors.SsoError:
    description = str(exc.description or "")[:200]
    if exc.error == "invalid_grant" and any(word in description.lower() for word in PKCE_WORDS):
        return errors.PkceFailed(
            "The provider refused the code: the PKCE verifier does not match the challenge "
            "(the authorization request was altered on its way). Start the login again."
        )
    if exc.error == "invalid_grant":
        return errors.CodeRejected(
            f"The provider refused the authorization code ({description or exc.error}): it was "
            "used or expired, or its PKCE verifier does not match the challenge (the authorization "
            "request was altered on its way). Start the login again."
        )
    return errors.ProviderError(f"The provider's token endpoint refused: {exc.error} {description}".strip())


def _id_token_error(exc: JoseError) -> errors.SsoError:
    if isinstance(exc, ExpiredTokenError):
        return errors.TokenExpired(
            "The ID token has expired: it is older than its lifetime, or this server's clock and "
            "the provider's disagree by more than OIDC_CLOCK_LEEWAY_SECONDS (check NTP)."
        )
    if isinstance(exc, InvalidKeyIdError | BadSignatureError):
        return errors.UnknownSigningKey(
            "The ID token is not signed by any key the provider publishes (JWKS)."
        )
    if isinstance(exc, ClaimError):
        claim = exc.claim
        if claim == "nonce":
            return errors.NonceMismatch("The ID token's nonce is not the one this login sent; start again.")
        if claim in _AUDIENCE_CLAIMS:
            return errors.WrongAudience(
                "The ID token was issued to another client; check client_id in OIDC_PROVIDERS."
            )
        if claim == "iss":
            return errors.WrongIssuer("The ID token names another issuer than the configured one.")
        if claim in _CLOCK_CLAIMS:
            return errors.ClockSkew(
                "The ID token is dated in the future: this server's clock and the provider's "
                "disagree by more than OIDC_CLOCK_LEEWAY_SECONDS (check NTP)."
            )
    return errors.InvalidIdToken(f"The ID token is invalid ({type(exc).__name__}).")


def build_clients(settings: Settings, resolve: Resolver = system_resolve) -> dict[str, OidcClient]:
    """One client per configured provider (client secrets read from their files now)."""
    allowlist = EgressAllowlist.parse(settings.oidc_allowed_networks)
    return {
        provider.name: OidcClient(
            provider,
            provider.secret(),
            allowlist=allowlist,
            leeway=settings.oidc_clock_leeway_seconds,
            timeout=settings.oidc_timeout_seconds,
            resolve=resolve,
        )
        for provider in settings.oidc_providers
    }
