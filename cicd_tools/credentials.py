"""Which azure-identity credential for which runner, chosen explicitly and named truthfully.

``--credential`` / ``CICD_CREDENTIAL`` picks one of:

- ``azure-pipelines``: ``AzurePipelinesCredential``. Azure DevOps workload identity federation from Python:
  ``AzureCLI@2`` with a workload-identity service connection exposes ``AZURESUBSCRIPTION_CLIENT_ID``,
  ``AZURESUBSCRIPTION_TENANT_ID`` and ``AZURESUBSCRIPTION_SERVICE_CONNECTION_ID``; the step must map
  ``SYSTEM_ACCESSTOKEN: $(System.AccessToken)``; the agent sets ``SYSTEM_OIDCREQUESTURI``. A fresh OIDC token is
  fetched for every Entra token, so long jobs do not hit AADSTS700024.
- ``azure-cli``: ``AzureCliCredential``. What ``AzureCLI@2`` and GitHub's ``azure/login`` leave behind: a logged-in
  ``az`` (its federated login can expire in long jobs).
- ``workload-identity``: ``AZURE_CLIENT_ID`` and ``AZURE_TENANT_ID`` with either ``AZURE_FEDERATED_TOKEN_FILE``
  (``WorkloadIdentityCredential``; neither runner sets the file: AKS workload identity does) or, in a GitHub job with
  ``permissions: id-token: write``, ``ACTIONS_ID_TOKEN_REQUEST_URL``/``ACTIONS_ID_TOKEN_REQUEST_TOKEN``
  (``ClientAssertionCredential`` asking GitHub for a fresh OIDC token, audience ``api://AzureADTokenExchange``, for
  every Entra token: GitHub OIDC without az).
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

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from cicd_tools.support.azerrors import summarize_auth_failure
from cicd_tools.support.bounded import InputRefused, load_json_bounded
from cicd_tools.support.errors import ConfigError
from cicd_tools.support.redact import register_secret

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
    "workload-identity": ("AZURE_CLIENT_ID", "AZURE_TENANT_ID"),  # plus a token source: _token_source()
    "azure-cli": (),
    "managed-identity": (),
    "default": (),
}
HINTS = {
    "azure-pipelines": "Run the step in AzureCLI@2 with a workload-identity service connection and map "
                       "`SYSTEM_ACCESSTOKEN: $(System.AccessToken)` in its env; or set CICD_CREDENTIAL=azure-cli.",
    "workload-identity": "Set AZURE_CLIENT_ID and AZURE_TENANT_ID, plus AZURE_FEDERATED_TOKEN_FILE (a file holding "
                         "an OIDC token) or, on GitHub, `permissions: id-token: write` (which sets "
                         "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN).",
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
        profile = load_json_bounded(config / "azureProfile.json")
        logged_in = bool(profile.get("subscriptions"))
    except (OSError, ValueError, AttributeError, InputRefused):
        logged_in = False
    if not logged_in:
        return False, f"az is on PATH but {config / 'azureProfile.json'} lists no login"
    return True, f"az is on PATH and logged in ({config / 'azureProfile.json'})"


GITHUB_REQUEST_VARS = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


def _token_source(env: Mapping[str, str]) -> str | None:
    """Where workload identity gets its OIDC token: ``file``, ``github`` (the runner's request URL) or None."""
    if env.get("AZURE_FEDERATED_TOKEN_FILE"):
        return "file"
    if all(env.get(name) for name in GITHUB_REQUEST_VARS):
        return "github"
    return None


def _missing(mode: str, env: Mapping[str, str]) -> tuple[str, ...]:
    missing = tuple(name for name in REQUIRED[mode] if not env.get(name))
    if mode == "workload-identity" and _token_source(env) is None:
        missing += ("AZURE_FEDERATED_TOKEN_FILE (or ACTIONS_ID_TOKEN_REQUEST_URL + ACTIONS_ID_TOKEN_REQUEST_TOKEN)",)
    return missing


def _class_name(mode: str, env: Mapping[str, str]) -> str:
    if mode == "workload-identity" and _token_source(env) == "github":
        return "ClientAssertionCredential"
    return CLASS_NAMES[mode]


def github_id_token(url: str, request_token: str) -> Callable[[], str]:
    """A function asking GitHub's runner for a fresh OIDC token (what ``@actions/core``'s ``getIDToken`` does)."""

    def fetch() -> str:
        import requests
        from azure.core.exceptions import ClientAuthenticationError

        separator = "&" if "?" in url else "?"
        try:
            response = requests.get(f"{url}{separator}audience={quote(EXCHANGE_AUDIENCE, safe='')}",
                                    headers={"Authorization": f"Bearer {request_token}"}, timeout=30)
        except requests.RequestException as err:
            raise ClientAuthenticationError(f"GitHub's OIDC token request failed: {err}") from None
        if response.status_code != 200:
            raise ClientAuthenticationError(
                f"GitHub's OIDC token request answered HTTP {response.status_code}; the job needs "
                "`permissions: id-token: write`.")
        try:
            value = response.json()["value"]
        except (ValueError, KeyError, TypeError):
            raise ClientAuthenticationError("GitHub's OIDC token answer has no 'value'.") from None
        register_secret(str(value))
        return str(value)

    return fetch


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
        source = ("AZURE_FEDERATED_TOKEN_FILE" if _token_source(env) == "file"
                  else "GitHub's ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN (id-token: write)")
        return CredentialChoice(_class_name("workload-identity", env), f"{CREDENTIAL_ENV}=auto: AZURE_CLIENT_ID, "
                                f"AZURE_TENANT_ID and {source} are set", "workload-identity")
    if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
        return choose("managed-identity", "IDENTITY_ENDPOINT is set (managed identity)")
    note = ""
    if any(env.get(name) for name in REQUIRED["azure-pipelines"][:3]):  # an AzureCLI@2 step, job token not mapped
        note = f"; {', '.join(_missing('azure-pipelines', env))} not set, so not AzurePipelinesCredential"
    logged_in, why = _az_login(env)
    if logged_in:
        return choose("azure-cli", f"{why}; AzureCLI@2 and azure/login leave this behind{note}")
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
    if requested == "workload-identity" and _token_source(env) == "github":
        reason += "; OIDC token from GitHub's ACTIONS_ID_TOKEN_REQUEST_URL (AZURE_FEDERATED_TOKEN_FILE is unset)"
    return CredentialChoice(_class_name(requested, env), reason, requested, missing)


def build_credential() -> TokenCredential:
    """The credential for this process (command handlers call this). Raises: ConfigError for a mode that lacks
    its variables."""
    from cicd_tools.support.tls import require_sandbox_ca

    env = os.environ
    require_sandbox_ca(env)  # at once, not after a minute of retried certificate failures
    choice = describe_credential(env)
    if choice.missing:
        raise ConfigError(f"the {choice.mode} credential cannot be used: {', '.join(choice.missing)} missing",
                          hint=HINTS.get(choice.mode, f"Choose another --credential or {CREDENTIAL_ENV}."))
    if choice.name not in _announced:  # once per process: which identity every later call runs as
        _announced.add(choice.name)
        log.info("credential: %s (%s)", choice.name, choice.reason)
    from azure import identity

    if choice.mode == "azure-pipelines":
        register_secret(env["SYSTEM_ACCESSTOKEN"])
        return identity.AzurePipelinesCredential(
            tenant_id=env["AZURESUBSCRIPTION_TENANT_ID"], client_id=env["AZURESUBSCRIPTION_CLIENT_ID"],
            service_connection_id=env["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"],
            system_access_token=env["SYSTEM_ACCESSTOKEN"],
        )
    if choice.mode == "workload-identity" and _token_source(env) == "github":
        register_secret(env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
        return identity.ClientAssertionCredential(
            env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"],
            github_id_token(env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]),
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


@dataclass(frozen=True)
class TokenProbe:
    """The outcome of asking the chosen credential for a token (``doctor --online``)."""

    ok: bool
    credential: str  # the class that answered, or the one chosen when none did
    detail: str


def probe_token(scope: str) -> TokenProbe:
    """Ask the credential ``build_credential`` returns for a token for ``scope``; name the class that answered."""
    from azure.core.exceptions import ClientAuthenticationError

    choice = describe_credential()
    try:
        credential = build_credential()
        credential.get_token(scope)
    except ConfigError as err:
        return TokenProbe(False, choice.name, err.message)
    except ClientAuthenticationError as err:
        return TokenProbe(False, choice.name, summarize_auth_failure(str(err)))
    inner = getattr(credential, "_successful_credential", None)  # DefaultAzureCredential remembers which answered
    name = f"{choice.name} via {type(inner).__name__}" if inner is not None else choice.name
    return TokenProbe(True, name, f"token for {scope}")
