"""Every kind of bad access token gets the same 401, with a Bearer challenge."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from agentkeep.config import Settings
from tests.auth.helpers import bearer, register_and_login, without_request_id


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(claims: dict[str, Any], settings: Settings, **changes: Any) -> str:
    payload = {**claims, **changes}
    payload = {key: value for key, value in payload.items() if value is not _DROP}
    return jwt.encode(
        payload, settings.jwt_secret.get_secret_value(), algorithm="HS256", headers={"typ": "at+jwt"}
    )


_DROP = object()


def now() -> datetime:
    # Read when each bad token is made: a constant taken at import could be minutes old by
    # the time the test runs on a busy machine, and "10 minutes ahead" would have passed.
    return datetime.now(UTC)


def alg_none(claims: dict[str, Any], settings: Settings) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def other_key(claims: dict[str, Any], settings: Settings) -> str:
    return jwt.encode(claims, secrets.token_urlsafe(48), algorithm="HS256", headers={"typ": "at+jwt"})


def other_algorithm(claims: dict[str, Any], settings: Settings) -> str:
    key = settings.jwt_secret.get_secret_value()
    return jwt.encode(claims, key, algorithm="HS512", headers={"typ": "at+jwt"})


def plain_jwt_header(claims: dict[str, Any], settings: Settings) -> str:
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def tampered(claims: dict[str, Any], settings: Settings, token: str) -> str:
    header, _, signature = token.split(".")
    payload = {**claims, "sub": str(uuid.uuid4())}
    return f"{header}.{b64(json.dumps(payload).encode())}.{signature}"


MUTATIONS: dict[str, Callable[[dict[str, Any], Settings, str], str]] = {
    "alg-none": lambda c, s, t: alg_none(c, s),
    "hs256-other-key": lambda c, s, t: other_key(c, s),
    "hs512-not-pinned": lambda c, s, t: other_algorithm(c, s),
    "expired": lambda c, s, t: signed(c, s, exp=now() - timedelta(minutes=5), iat=now() - timedelta(hours=1)),
    "nbf-in-future": lambda c, s, t: signed(c, s, nbf=now() + timedelta(minutes=10)),
    "wrong-iss": lambda c, s, t: signed(c, s, iss="someone-else"),
    "wrong-aud": lambda c, s, t: signed(c, s, aud="another-api"),
    "missing-aud": lambda c, s, t: signed(c, s, aud=_DROP),
    "typ-refresh": lambda c, s, t: signed(c, s, typ="refresh"),
    "header-typ-jwt": lambda c, s, t: plain_jwt_header(c, s),
    "missing-sub": lambda c, s, t: signed(c, s, sub=_DROP),
    "non-uuid-sub": lambda c, s, t: signed(c, s, sub="alice"),
    "unknown-user": lambda c, s, t: signed(c, s, sub=str(uuid.uuid4())),
    "unknown-session": lambda c, s, t: signed(c, s, sid=str(uuid.uuid4())),
    "missing-sid": lambda c, s, t: signed(c, s, sid=_DROP),
    "missing-jti": lambda c, s, t: signed(c, s, jti=_DROP),
    "missing-exp": lambda c, s, t: signed(c, s, exp=_DROP),
    "tampered-payload": tampered,
    "signature-stripped": lambda c, s, t: t.rsplit(".", 1)[0] + ".",
    "garbage": lambda c, s, t: "not.a.jwt",
    "random-text": lambda c, s, t: secrets.token_urlsafe(40),
}


@pytest.fixture
async def issued(client: httpx.AsyncClient) -> dict[str, Any]:
    tokens = await register_and_login(client)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return {"tokens": tokens, "claims": claims}


async def test_the_genuine_token_works(client: httpx.AsyncClient, issued: dict[str, Any]) -> None:
    response = await client.get("/auth/me", headers=bearer(issued["tokens"]["access_token"]))
    assert response.status_code == 200
    claims = issued["claims"]
    assert claims["typ"] == "access"
    # The organization the token acts in: the user's personal one by default.
    orgs = (await client.get("/api/orgs", headers=bearer(issued["tokens"]["access_token"]))).json()["items"]
    assert claims["org"] == orgs[0]["id"]
    assert {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid"} <= set(claims)


async def test_every_bad_token_gets_one_uniform_401(
    client: httpx.AsyncClient, settings: Settings, issued: dict[str, Any]
) -> None:
    claims, genuine = issued["claims"], issued["tokens"]["access_token"]
    headers: dict[str, dict[str, str]] = {
        name: bearer(mutate(claims, settings, genuine)) for name, mutate in MUTATIONS.items()
    }
    headers["refresh-token-as-access"] = bearer(issued["tokens"]["refresh_token"])
    headers["empty-bearer"] = {"Authorization": "Bearer "}
    headers["wrong-scheme"] = {"Authorization": f"Basic {genuine}"}
    headers["token-without-scheme"] = {"Authorization": genuine}
    headers["no-header"] = {}
    assert len(headers) >= 15

    bodies = {}
    for name, header in headers.items():
        response = await client.get("/auth/me", headers=header)
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == "Bearer", name
        assert response.headers["content-type"] == "application/problem+json", name
        bodies[name] = json.dumps(without_request_id(response.json()), sort_keys=True)
    assert len(set(bodies.values())) == 1, bodies
    # The genuine token still works: the failures above were about the tokens, not the user.
    assert (await client.get("/auth/me", headers=bearer(genuine))).status_code == 200
