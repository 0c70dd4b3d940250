"""Which azure-identity credential for which runner.

CI uses ``DefaultAzureCredential``: it finds the workload-identity federation of GitHub Actions and
Azure DevOps service connections (``AZURE_CLIENT_ID`` + ``AZURE_FEDERATED_TOKEN_FILE``), a client
secret, a managed identity (self-hosted agents; the sandbox serves the App Service MSI protocol
through ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``) or an Azure CLI login on a laptop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


@dataclass(frozen=True)
class CredentialChoice:
    """The credential the environment selects, and why."""

    name: str
    reason: str


def describe_credential(environ: Mapping[str, str] | None = None) -> CredentialChoice:
    """Which credential ``DefaultAzureCredential`` would use first here (without fetching a token)."""
    env = os.environ if environ is None else environ
    if env.get("AZURE_CLIENT_ID") and env.get("AZURE_FEDERATED_TOKEN_FILE"):
        return CredentialChoice("WorkloadIdentityCredential", "AZURE_FEDERATED_TOKEN_FILE is set (OIDC federation)")
    if env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID") and env.get("AZURE_CLIENT_SECRET"):
        return CredentialChoice("EnvironmentCredential", "AZURE_CLIENT_ID/TENANT_ID/CLIENT_SECRET are set")
    if env.get("AZURE_CLIENT_ID") and env.get("AZURE_CLIENT_CERTIFICATE_PATH"):
        return CredentialChoice("EnvironmentCredential", "AZURE_CLIENT_CERTIFICATE_PATH is set")
    if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
        return CredentialChoice("ManagedIdentityCredential", "IDENTITY_ENDPOINT is set (managed identity)")
    if env.get("CICD_SANDBOX_STATE_DIR"):
        return CredentialChoice("ManagedIdentityCredential", "sandbox environment")
    return CredentialChoice(
        "DefaultAzureCredential", "no explicit identity: IMDS managed identity, then Azure CLI / PowerShell login"
    )


def build_credential() -> TokenCredential:
    """The credential for this process (only ``cli.py`` and the flow call this)."""
    from azure.identity import DefaultAzureCredential

    # Interactive browser login can hang a CI job: never allow it.
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)
