"""Which azure-identity credential for which runner, chosen explicitly and named truthfully.

``--credential`` / ``CICD_CREDENTIAL`` picks one of:

- ``azure-pipelines``: ``AzurePipelinesCredential``. Azure DevOps workload identity federation from Python:
  ``AzureCLI@2`` with a workload-identity service connection exposes ``AZURESUBSCRIPTION_CLIENT_ID``,
  ``AZURESUBSCRIPTION_TENANT_ID`` and ``AZURESUBSCRIPTION_SERVICE_CONNECTION_ID``; the step must map
  ``SYSTEM_ACCESSTOKEN: $(System.AccessToken)``; the agent sets ``SYSTEM_OIDCREQUESTURI``. A fresh OIDC token is
  fetched for every Entra token, so long jobs do not hit AADSTS700024.
- ``azure-cli``: ``AzureCliCredential``. What ``AzureCLI@2`` and GitHub's ``azure/login`` leave behind: a logged-in
  ``az`` (its federated login can expire in long jobs).
- ``workload-identity``: ``WorkloadIdentityCredential`` with ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID`` and
  ``AZURE_FEDERATED_TOKEN_FILE``. Neither runner sets the token file: AKS workload identity does, and a GitHub job
  can write its OIDC token there itself.
- ``managed-identity``: ``ManagedIdentityCredential`` (self-hosted agents on Azure; ``AZURE_CLIENT_ID`` selects a
  user-assigned identity).
- ``default``: ``DefaultAzureCredential`` without interactive login (environment, workload identity, managed
  identity, then developer logins).
- ``auto`` (the default) checks, in this order: the four Azure Pipelines variables and
  ``SYSTEM_OIDCREQUESTURI`` (azure-pipelines); ``AZURE_CLIENT_ID`` with ``AZURE_CLIENT_SECRET`` or a certificate
  (default, which uses EnvironmentCredential); the workload-identity variables; ``IDENTITY_ENDPOINT`` /
  ``MSI_ENDPOINT`` (managed-identity); ``az`` on PATH with a login in its profile (azure-cli; read from
  ``AZURE_CONFIG_DIR`` or ``~/.azure``, no process is run); otherwise default.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cicd_tools.errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

CREDENTIAL_ENV = "CICD_CREDENTIAL"
MODES = ("auto", "azure-cli", "workload-identity", "azure-pipelines", "managed-identity", "default")
CLASS_NAMES = {
    "azure-cli": "AzureCliCredential",
    "workload-identity": "WorkloadIdentityCredential",
    "azure-pipelines": "AzurePipelinesCredential",
    "managed-identity": "ManagedIdentityCredential",
    "default": "DefaultAzureCredential",
}
REQUIRED = {
    "azure-pipelines": ("AZURESUBSCRIPTION_CLIENT_ID", "AZURESUBSCRIPTION_TENANT_ID",
                        "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "SYSTEM_ACCESSTOKEN", "SYSTEM_OIDCREQUESTURI"),
    "workload-identity": ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"),
    "azure-cli": (),
    "managed-identity": (),
    "default": (),
}
HINTS = {
    "azure-pipelines": "Run the step in AzureCLI@2 with a workload-identity service connection and map "
                       "`SYSTEM_ACCESSTOKEN: $(System.AccessToken)` in its env; or set CICD_CREDENTIAL=azure-cli.",
    "workload-identity": "Set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE (a file holding the "
                         "runner's OIDC token); on GitHub, `azure/login` with CICD_CREDENTIAL=azure-cli is simpler.",
    "azure-cli": "Log az in first (AzureCLI@2, `azure/login`, or `az login`), or choose another --credential.",
}

_selected: str | None = None  # set by cli.main from --credential for one invocation
_announced: set[str] = set()


@dataclass(frozen=True)
class CredentialChoice:
    """The credential the toolkit will use, and why."""

    name: str  # the azure-identity class
    reason: str
    mode: str = "default"  # never "auto": what auto resolved to
    missing: tuple[str, ...] = field(default=())  # variables an explicit mode needs but lacks

    @property
    def usable(self) -> bool:
        return not self.missing


@contextmanager
def selected_mode(mode: str | None) -> Iterator[None]:
    """Use ``mode`` (from ``--credential``) instead of ``CICD_CREDENTIAL`` while the block runs."""
    global _selected
    previous, _selected = _selected, mode
    try:
        yield
    finally:
        _selected = previous


def _az_login(env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether ``az`` is on PATH and its profile lists a subscription (read from disk: no az process)."""
    az = shutil.which("az", path=env.get("PATH"))
    if az is None:
        return False, "az is not on PATH"
    config = Path(env.get("AZURE_CONFIG_DIR") or Path(env.get("HOME") or Path.home()) / ".azure")
    try:
        profile = json.loads((config / "azureProfile.json").read_text(encoding="utf-8-sig"))
        logged_in = bool(profile.get("subscriptions"))
    except (OSError, ValueError, AttributeError):
        logged_in = False
    if not logged_in:
        return False, f"az is on PATH but {config / 'azureProfile.json'} lists no login"
    return True, f"az is on PATH and logged in ({config / 'azureProfile.json'})"


def _missing(mode: str, env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(name for name in REQUIRED[mode] if not env.get(name))


def _auto(env: Mapping[str, str]) -> CredentialChoice:
    def choose(mode: str, reason: str) -> CredentialChoice:
        return CredentialChoice(CLASS_NAMES[mode], f"{CREDENTIAL_ENV}=auto: {reason}", mode)

    if not _missing("azure-pipelines", env):
        return choose("azure-pipelines", "Azure DevOps workload identity (AZURESUBSCRIPTION_* from AzureCLI@2, "
                                         "SYSTEM_ACCESSTOKEN and SYSTEM_OIDCREQUESTURI are set)")
    if env.get("AZURE_CLIENT_ID") and (env.get("AZURE_CLIENT_SECRET") or env.get("AZURE_CLIENT_CERTIFICATE_PATH")):
        return CredentialChoice("DefaultAzureCredential", f"{CREDENTIAL_ENV}=auto: AZURE_CLIENT_ID with a client "
                                "secret or certificate is set (DefaultAzureCredential uses EnvironmentCredential)")
    if not _missing("workload-identity", env):
        return choose("workload-identity", "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE are set")
    if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
        return choose("managed-identity", "IDENTITY_ENDPOINT is set (managed identity)")
    logged_in, why = _az_login(env)
    if logged_in:
        return choose("azure-cli", why + "; AzureCLI@2 and azure/login leave this behind")
    partial = [name for name in REQUIRED["azure-pipelines"][:4] if env.get(name)]
    note = ""
    if partial:
        lacking = ", ".join(_missing("azure-pipelines", env))
        note = f"; {lacking} not set, so not AzurePipelinesCredential"
    return CredentialChoice("DefaultAzureCredential", f"{CREDENTIAL_ENV}=auto: no CI identity found ({why}{note}): "
                            "environment, workload identity, managed identity (IMDS), then developer logins")


def describe_credential(environ: Mapping[str, str] | None = None, mode: str | None = None) -> CredentialChoice:
    """The credential ``build_credential`` would build here, and why (no token is fetched, no process run)."""
    env = os.environ if environ is None else environ
    requested = (mode or _selected or env.get(CREDENTIAL_ENV) or "auto").strip().lower()
    if requested not in MODES:
        raise ConfigError(f"{CREDENTIAL_ENV}={requested!r} is not a credential choice",
                          hint=f"Use one of: {', '.join(MODES)} (--credential or {CREDENTIAL_ENV}).")
    if requested == "auto":
        return _auto(env)
    source = f"--credential {requested}" if (mode or _selected) else f"{CREDENTIAL_ENV}={requested}"
    missing = _missing(requested, env)
    reason = f"{source} (explicit)"
    if requested == "azure-cli":
        _, why = _az_login(env)
        reason += f"; {why}"
        if shutil.which("az", path=env.get("PATH")) is None:
            missing = ("az on PATH",)
    if requested == "managed-identity" and env.get("AZURE_CLIENT_ID"):
        reason += "; user-assigned identity AZURE_CLIENT_ID"
    if missing:
        reason += f"; missing: {', '.join(missing)}"
    return CredentialChoice(CLASS_NAMES[requested], reason, requested, missing)


def build_credential() -> TokenCredential:
    """The credential for this process (command handlers call this). Raises: ConfigError for a mode that lacks
    its variables."""
    env = os.environ
    choice = describe_credential(env)
    if choice.missing:
        raise ConfigError(f"the {choice.mode} credential cannot be used: {', '.join(choice.missing)} missing",
                          hint=HINTS.get(choice.mode, f"Choose another --credential or {CREDENTIAL_ENV}."))
    if choice.name not in _announced:  # once per process: which identity every later call runs as
        _announced.add(choice.name)
        log.info("credential: %s (%s)", choice.name, choice.reason)
    from azure import identity

    if choice.mode == "azure-pipelines":
        return identity.AzurePipelinesCredential(
            tenant_id=env["AZURESUBSCRIPTION_TENANT_ID"], client_id=env["AZURESUBSCRIPTION_CLIENT_ID"],
            service_connection_id=env["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"],
            system_access_token=env["SYSTEM_ACCESSTOKEN"],
        )
    if choice.mode == "workload-identity":
        return identity.WorkloadIdentityCredential(
            tenant_id=env["AZURE_TENANT_ID"], client_id=env["AZURE_CLIENT_ID"],
            token_file_path=env["AZURE_FEDERATED_TOKEN_FILE"],
        )
    if choice.mode == "azure-cli":
        return identity.AzureCliCredential()
    if choice.mode == "managed-identity":
        return identity.ManagedIdentityCredential(client_id=env.get("AZURE_CLIENT_ID") or None)
    # Interactive browser login can hang a CI job: never allow it.
    return identity.DefaultAzureCredential(exclude_interactive_browser_credential=True)
