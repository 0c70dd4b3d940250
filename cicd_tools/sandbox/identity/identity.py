"""Sandbox identity: v1-shaped tokens per principal, and a TokenCredential that mints them.

Azurite (``--oauth basic``) accepts an unsigned JWT whose ``iss`` starts with
``https://sts.windows.net/`` and whose ``aud`` is the storage resource (AZURE_FACTS.md §3); the
sandbox's own emulators read ``oid`` from the same token to enforce role assignments.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from azure.core.credentials import AccessToken

SANDBOX_TENANT = "72f988bf-0000-4000-8000-00000000cafe"
STORAGE_AUDIENCE = "https://storage.azure.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def principal_oid(principal: str) -> str:
    """A stable object id for a principal name (so role tables can be written by name)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cicd-tools-sandbox:{principal}"))


def mint_token(principal: str, audience: str, *, lifetime: int = 3600, now: float | None = None) -> str:
    """An unsigned v1 JWT for ``principal`` (``oid``, ``appid``, ``tid``, ``aud``, ``iss``, times)."""
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
    header = {"alg": "none", "typ": "JWT"}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def decode_token(token: str) -> dict[str, Any]:
    """Claims of a sandbox token (no signature check: the sandbox trusts its own tokens)."""
    parts = token.split(".")
    if len(parts) < 2:
        raise ValueError("not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(payload))
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not an object")
    return claims


def audience_for_scope(scope: str) -> str:
    """``https://storage.azure.com/.default`` -> ``https://storage.azure.com``."""
    return scope.removesuffix("/.default").rstrip("/")


class SandboxCredential:
    """A ``TokenCredential`` minting sandbox tokens for one principal (tests and the demo)."""

    def __init__(self, principal: str = "ci-pipeline") -> None:
        self.principal = principal

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        audience = audience_for_scope(scopes[0]) if scopes else STORAGE_AUDIENCE
        expires = int(time.time()) + 3600
        return AccessToken(mint_token(self.principal, audience), expires)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> SandboxCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
