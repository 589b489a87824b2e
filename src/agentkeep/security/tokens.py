"""Access tokens (signed JWTs, RFC 8725 practice) and opaque refresh tokens.

Access tokens are short-lived JWTs with an explicit type in the header (`at+jwt`, RFC 9068)
and in the claims (`typ: access`); decoding pins the algorithm, issuer and audience and
requires every claim, so a refresh token, an ID token from elsewhere or an `alg: none`
token is never accepted. Whether the session behind a valid token is still alive is not
decided here: the auth service checks the database on every request.

Verifying a signature costs more than the rest of a request's authentication (PyJWT
re-parses the key each time), so the last VERIFIED_CACHE_SIZE tokens that passed every check
are remembered, keyed by the whole token: a hit still checks expiry, and a token that was
never verified, or differs in one byte, is verified in full.

Refresh tokens are not JWTs: they are 256 random bits with a recognisable prefix, and only
an HMAC-SHA256 of them is stored (see docs/auth.md for why HMAC rather than a bare hash).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from agentkeep.config import Settings

ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - claim values, not secrets
ACCESS_TOKEN_HEADER_TYPE = "at+jwt"  # noqa: S105
REFRESH_TOKEN_PREFIX = "akr_"  # noqa: S105
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ", "sid"]
# Clock skew tolerated between instances that issue and check tokens.
LEEWAY_SECONDS = 5
# Verified access tokens remembered per process (about 1 KiB each).
VERIFIED_CACHE_SIZE = 4096
_REFRESH_KEY_LABEL = b"agentkeep refresh-token hmac v1"


class InvalidToken(Exception):
    """The token is not a valid access token; `reason` is for logs and audit only."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    issued_at: datetime
    expires_at: datetime
    org_id: uuid.UUID | None = None


def _uuid_claim(payload: dict[str, Any], name: str) -> uuid.UUID:
    value = payload.get(name)
    if not isinstance(value, str):
        raise InvalidToken(f"{name}_not_a_string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidToken(f"{name}_not_a_uuid") from None


class TokenCodec:
    """Issues and checks access tokens with the deployment's key, issuer and audience."""

    def __init__(
        self, *, secret: str, algorithm: str, issuer: str, audience: str, access_ttl_seconds: int
    ) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        self.access_ttl_seconds = access_ttl_seconds
        self._refresh_key = hmac.new(secret.encode(), _REFRESH_KEY_LABEL, hashlib.sha256).digest()
        # Exceptions are not cached: an invalid token is checked in full every time.
        self._verified = functools.lru_cache(maxsize=VERIFIED_CACHE_SIZE)(self._verify_access)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCodec:
        return cls(
            secret=settings.jwt_secret.get_secret_value(),
            algorithm=settings.jwt_algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl_seconds=settings.access_token_ttl_seconds,
        )

    def issue_access(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        org_id: uuid.UUID | None = None,
        now: datetime | None = None,
    ) -> tuple[str, AccessClaims]:
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        claims = AccessClaims(
            user_id=user_id,
            session_id=session_id,
            jti=secrets.token_urlsafe(16),
            issued_at=issued,
            expires_at=issued + timedelta(seconds=self.access_ttl_seconds),
            org_id=org_id,
        )
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "iat": issued,
            "nbf": issued,
            "exp": claims.expires_at,
            "jti": claims.jti,
            "typ": ACCESS_TOKEN_TYPE,
            "sid": str(session_id),
            "org": str(org_id) if org_id else None,
        }
        token = jwt.encode(
            payload, self._secret, algorithm=self._algorithm, headers={"typ": ACCESS_TOKEN_HEADER_TYPE}
        )
        return token, claims

    def decode_access(self, token: str) -> AccessClaims:
        """Verify signature, algorithm, issuer, audience, times and type; or raise InvalidToken."""
        claims = self._verified(token)
        if datetime.now(UTC) >= claims.expires_at + timedelta(seconds=LEEWAY_SECONDS):
            raise InvalidToken("ExpiredSignatureError")  # the reason PyJWT gives on a first check
        return claims

    def _verify_access(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        if header.get("typ") != ACCESS_TOKEN_HEADER_TYPE or payload.get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidToken("wrong_type")
        jti = payload.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidToken("jti_invalid")
        org = payload.get("org")
        return AccessClaims(
            user_id=_uuid_claim(payload, "sub"),
            session_id=_uuid_claim(payload, "sid"),
            jti=jti,
            issued_at=datetime.fromtimestamp(int(payload["iat"]), UTC),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
            org_id=_uuid_claim(payload, "org") if org is not None else None,
        )

    def hash_refresh_token(self, token: str) -> str:
        return hmac.new(self._refresh_key, token.encode(), hashlib.sha256).hexdigest()


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
