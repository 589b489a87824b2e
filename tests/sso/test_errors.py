"""How token endpoint refusals are told apart, from the words real providers use for them.

The messages are the providers' own: Keycloak answers a PKCE mismatch with "PKCE verification
failed: Code mismatch with code_verifier", Microsoft Entra ID with AADSTS501481 "The
Code_Verifier does not match the code_challenge supplied in the authorization request", and a
used or expired code with "Code not valid" (Keycloak).
"""

from __future__ import annotations

import pytest
from authlib.integrations.base_client.errors import OAuthError

from agentkeep.sso import errors
from agentkeep.sso.client import _token_endpoint_error


@pytest.mark.parametrize(
    "description",
    [
        "PKCE verification failed: Code mismatch with code_verifier",
        "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the "
        "authorization request.",
    ],
)
def test_a_pkce_refusal_that_says_so_is_a_pkce_failure(description: str) -> None:
    problem = _token_endpoint_error(OAuthError(error="invalid_grant", description=description))
    assert isinstance(problem, errors.PkceFailed)
    assert problem.type_slug == "oidc-pkce-failed"


def test_a_refused_code_that_does_not_say_why_is_a_code_refusal() -> None:
    problem = _token_endpoint_error(OAuthError(error="invalid_grant", description="Code not valid"))
    assert isinstance(problem, errors.CodeRejected)


def test_a_client_authentication_failure_is_a_provider_error() -> None:
    problem = _token_endpoint_error(
        OAuthError(error="invalid_client", description="client authentication failed")
    )
    assert isinstance(problem, errors.ProviderError)
    assert problem.status_code == 502
