"""A ``TokenProvider`` backed by azure-identity, for ``adf run-local`` against real endpoints."""

from __future__ import annotations

from typing import Any


def resource_to_scope(resource: str) -> str:
    """A v1 resource (what WebActivity's ``authentication.resource`` holds) as a v2 scope."""
    return resource if resource.endswith("/.default") else resource.rstrip("/") + "/.default"


class AzureIdentityTokens:
    """Tokens from ``DefaultAzureCredential`` (built on first use, so nothing is imported when unused)."""

    def __init__(self, credential: Any = None) -> None:
        self._credential = credential

    def get_token(self, resource: str) -> str:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return str(self._credential.get_token(resource_to_scope(resource)).token)
