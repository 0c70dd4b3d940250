"""Sandbox identity: v1-shaped tokens per principal, signed with the sandbox's own key, and a TokenCredential.

Every token the sandbox hands out (MSI endpoint, Entra token endpoint, the az stand-in, the CI OIDC
issuers) is an HS256 JWT signed with a key derived from the per-sandbox secret (``CICD_SANDBOX_SECRET``,
generated at start-up, kept in the 0600 ``sandbox.json``). ARM and the blob front check the signature,
the audience and the lifetime (``verify_token``), so a forged ``alg: none`` token is refused as Entra-backed
services refuse it. Azurite cannot check signatures (AZURE_FACTS.md §3), so it takes no tokens at all: the blob
front checks them and signs what it admits with the account key (storage/resign.py); the sandbox's own emulators
read ``oid`` from them to enforce role assignments.
The real azure-identity credentials do not validate tokens client side, so they work unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from typing import Any

from azure.core.credentials import AccessToken

SANDBOX_TENANT = "72f988bf-0000-4000-8000-00000000cafe"
STORAGE_AUDIENCE = "https://storage.azure.com"
SECRET_ENV = "CICD_SANDBOX_SECRET"  # the per-sandbox secret, as `cicd-tools sandbox env` exports it
ALGORITHM = "HS256"
CLOCK_SKEW = 300  # seconds of nbf/exp leeway, as Entra-backed services allow


class TokenError(ValueError):
    """A bearer token the sandbox did not sign, or one no longer (or not yet) valid. ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # malformed | signature | expired | not-yet-valid


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_secret() -> str:
    """A fresh per-sandbox secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def signing_key(secret: str) -> bytes:
    """The token-signing key of the sandbox whose secret is ``secret`` (never the secret itself)."""
    return hmac.new(secret.encode(), b"cicd-tools-sandbox:token-signing-key", hashlib.sha256).digest()


def principal_oid(principal: str) -> str:
    """A stable object id for a principal name (so role tables can be written by name)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cicd-tools-sandbox:{principal}"))


def sign_claims(claims: dict[str, Any], key: bytes) -> str:
    """``claims`` as an HS256 JWT signed with ``key``."""
    header = {"alg": ALGORITHM, "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def mint_token(principal: str, audience: str, *, key: bytes, lifetime: int = 3600, now: float | None = None) -> str:
    """A signed v1 JWT for ``principal`` (``oid``, ``appid``, ``tid``, ``aud``, ``iss``, times)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": audience.rstrip("/"),
        "iss": f"https://sts.windows.net/{SANDBOX_TENANT}/",
        "iat": issued - 60,
        "nbf": issued - 60,
        "exp": issued + lifetime,
        "oid": principal_oid(principal),
        "appid": principal_oid(principal),
        "sub": principal_oid(principal),
        "tid": SANDBOX_TENANT,
        "name": principal,
        "ver": "1.0",
    }
    return sign_claims(claims, key)


def decode_token(token: str) -> dict[str, Any]:
    """Claims of a JWT, unverified (to read what a token says; ``verify_token`` decides whether to trust it)."""
    parts = token.split(".")
    if len(parts) < 2:
        raise ValueError("not a JWT")
    try:
        claims = json.loads(_unb64(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("the JWT payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not an object")
    return claims


def verify_signature(token: str, key: bytes) -> dict[str, Any]:
    """The claims of a token signed with ``key`` (lifetime not checked). Raises: TokenError.

    Only HS256 with ``key`` is accepted: ``alg: none``, another algorithm, a missing or wrong signature are
    refused (reason ``signature``).
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed", "The token is not a JWS compact serialization (three parts).")
    try:
        header = json.loads(_unb64(parts[0]))
        signature = _unb64(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenError("malformed", "The token header or signature is not base64url.") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        alg = header.get("alg") if isinstance(header, dict) else None
        raise TokenError("signature", f"The token's algorithm {alg!r} is not accepted; tokens must be signed.")
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode("ascii", errors="replace"), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise TokenError("signature", "The token's signature is invalid.")
    try:
        return decode_token(token)
    except ValueError as err:
        raise TokenError("malformed", str(err)) from None


def verify_token(token: str, key: bytes, *, now: float | None = None) -> dict[str, Any]:
    """The claims of a token this sandbox signed and that is valid now. Raises: TokenError.

    Callers check the audience themselves (it differs between ARM, storage and the CI token exchange).
    """
    claims = verify_signature(token, key)
    moment = time.time() if now is None else now
    try:
        expires, not_before = float(claims.get("exp", 0)), float(claims.get("nbf", 0))
    except (TypeError, ValueError):
        raise TokenError("malformed", "The token's exp/nbf are not numbers.") from None
    if expires < moment:
        raise TokenError("expired", "The token is expired.")
    if not_before > moment + CLOCK_SKEW:
        raise TokenError("not-yet-valid", "The token is not yet valid.")
    return claims


def audience_for_scope(scope: str) -> str:
    """``https://storage.azure.com/.default`` -> ``https://storage.azure.com``."""
    return scope.removesuffix("/.default").rstrip("/")


class SandboxCredential:
    """A ``TokenCredential`` minting sandbox tokens for one principal (tests, benchmarks and the demo).

    ``secret`` is the sandbox's secret (``Sandbox.secret``); without it, ``CICD_SANDBOX_SECRET`` from the
    environment. With neither, tokens are signed with a throwaway key: no sandbox accepts them.
    """

    def __init__(self, principal: str = "ci-pipeline", *, secret: str | None = None) -> None:
        self.principal = principal
        self._key = signing_key(secret or os.environ.get(SECRET_ENV) or new_secret())

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        audience = audience_for_scope(scopes[0]) if scopes else STORAGE_AUDIENCE
        expires = int(time.time()) + 3600
        return AccessToken(mint_token(self.principal, audience, key=self._key), expires)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> SandboxCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
