"""Why a single sign-on failed, one problem type each, with what the person can do about it.

`reason` is the short code written to the `sso_login_failed` audit record.
"""

from __future__ import annotations

from agentkeep.errors import AppError, Unauthorized


class SsoError(AppError):
    """A failed single sign-on; `reason` goes to the audit record."""

    reason: str = "failed"


class UnknownProvider(SsoError):
    status_code = 404
    type_slug = "oidc-unknown-provider"
    title = "Unknown sign-in provider"
    reason = "unknown_provider"


class ProviderUnavailable(SsoError):
    status_code = 503
    type_slug = "oidc-provider-unavailable"
    title = "Sign-in provider unreachable"
    reason = "provider_unavailable"


class ProviderError(SsoError):
    status_code = 502
    type_slug = "oidc-provider-error"
    title = "Sign-in provider answered with an error"
    reason = "provider_error"


class ProviderRefused(SsoError):
    """The provider's own answer on the callback (`error=access_denied`, ...)."""

    status_code = 401
    type_slug = "oidc-provider-refused"
    title = "The sign-in provider refused the login"
    reason = "provider_refused"


class StateMismatch(SsoError):
    status_code = 400
    type_slug = "oidc-state-mismatch"
    title = "Sign-in state mismatch"
    reason = "state_mismatch"


class NonceMismatch(SsoError):
    status_code = 401
    type_slug = "oidc-nonce-mismatch"
    title = "ID token nonce mismatch"
    reason = "nonce_mismatch"


class PkceFailed(SsoError):
    status_code = 401
    type_slug = "oidc-pkce-failed"
    title = "PKCE verification failed"
    reason = "pkce_failed"


class CodeRejected(SsoError):
    status_code = 401
    type_slug = "oidc-code-rejected"
    title = "Authorization code rejected"
    reason = "code_rejected"


class TokenExpired(SsoError):
    status_code = 401
    type_slug = "oidc-token-expired"
    title = "ID token expired (or clocks disagree)"
    reason = "token_expired"


class ClockSkew(SsoError):
    status_code = 401
    type_slug = "oidc-clock-skew"
    title = "ID token issued in the future (clocks disagree)"
    reason = "clock_skew"


class WrongAudience(SsoError):
    status_code = 401
    type_slug = "oidc-wrong-audience"
    title = "ID token audience is not this client"
    reason = "wrong_audience"


class WrongIssuer(SsoError):
    status_code = 401
    type_slug = "oidc-wrong-issuer"
    title = "ID token or discovery issuer mismatch"
    reason = "wrong_issuer"


class UnknownSigningKey(SsoError):
    status_code = 401
    type_slug = "oidc-unknown-signing-key"
    title = "ID token signed by an unknown key"
    reason = "unknown_signing_key"


class InvalidIdToken(SsoError):
    status_code = 401
    type_slug = "oidc-invalid-id-token"
    title = "Invalid ID token"
    reason = "invalid_id_token"


class EmailMissing(SsoError):
    status_code = 403
    type_slug = "oidc-email-missing"
    title = "The provider sent no email address"
    reason = "email_missing"


class EmailNotVerified(SsoError):
    status_code = 403
    type_slug = "oidc-email-not-verified"
    title = "Email address not verified"
    reason = "email_not_verified"


class AccountExists(SsoError):
    status_code = 409
    type_slug = "oidc-account-exists"
    title = "An account with this email already exists"
    reason = "account_exists"


class AccountDisabled(SsoError):
    status_code = 403
    type_slug = "oidc-account-disabled"
    title = "Account disabled"
    reason = "disabled"


class NotAMember(SsoError):
    status_code = 403
    type_slug = "oidc-not-a-member"
    title = "Not a member of that organization"
    reason = "not_a_member"


class PasswordLoginDisabled(Unauthorized):
    """Same answer for every refused password login, so it tells nothing about the account."""

    type_slug = "password-login-disabled"
    title = "Password login is turned off"
