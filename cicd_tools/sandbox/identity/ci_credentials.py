"""What ``cicd-tools sandbox env --credential MODE`` prints: the variables (and files) that make the real
azure-identity class of each CI runner work against the sandbox.

- ``managed-identity`` (the default, unchanged): ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` (App Service MSI).
- ``azure-cli``: an ``az`` stand-in at ``STATE/bin/az`` put first on ``PATH``, logged in as the CI service
  principal in ``AZURE_CONFIG_DIR=STATE/azure`` (what ``AzureCLI@2`` and ``azure/login`` leave behind).
- ``workload-identity``: a GitHub Actions OIDC token in ``AZURE_FEDERATED_TOKEN_FILE`` plus
  ``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_AUTHORITY_HOST`` (the sandbox's Entra endpoint), and GitHub's
  ``ACTIONS_ID_TOKEN_REQUEST_URL``/``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` (used when the token file is unset).
- ``azure-pipelines``: ``SYSTEM_OIDCREQUESTURI``, ``SYSTEM_ACCESSTOKEN`` and the ``AZURESUBSCRIPTION_*`` variables
  ``AzureCLI@2`` exposes for a workload-identity service connection.
A mode given explicitly also sets ``CICD_CREDENTIAL`` (so the toolkit's choice is explicit) and unsets the other
modes' variables; ``sandbox env`` without ``--credential`` prints the sandbox's variables as they always were.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import cicd_tools
from cicd_tools.sandbox.identity.ci_oidc import (
    ADO_SERVICE_CONNECTION_ID,
    github_oidc_token,
    github_request_token,
    github_request_url,
    oidc_request_uri,
    system_access_token,
)
from cicd_tools.sandbox.identity.entra import client_id_of, client_secret_of
from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT, SECRET_ENV, signing_key
from cicd_tools.sandbox.layout import SandboxLayout

CREDENTIAL_MODES = ("managed-identity", "azure-cli", "workload-identity", "azure-pipelines")
DEFAULT_MODE = "managed-identity"
LOGIN_FILE = "cicd-sandbox-login.json"
PROFILE_FILE = "azureProfile.json"
GITHUB_TOKEN_FILE = "github-oidc-token"

# Variables some mode sets; a mode unsets the ones it does not set, so modes can be switched in one shell.
MODE_VARIABLES = (
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_CONFIG_DIR", "AZURE_CLIENT_ID", "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "SYSTEM_OIDCREQUESTURI", "SYSTEM_ACCESSTOKEN",
    "AZURESUBSCRIPTION_CLIENT_ID", "AZURESUBSCRIPTION_TENANT_ID", "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
    "CICD_CREDENTIAL",
)


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write atomically, readable by the owner only (these files hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def az_shim_text(config_dir: Path) -> str:
    """The ``az`` stand-in: a POSIX shell script running ``python -m cicd_tools.sandbox.identity.azcli``."""
    package_root = Path(cicd_tools.__file__).resolve().parent.parent
    return (
        "#!/bin/sh\n"
        "# az stand-in written by `cicd-tools sandbox env --credential azure-cli`: it answers\n"
        "# `az account get-access-token` and `az account show` with tokens from the sandbox's Entra endpoint.\n"
        f"AZURE_CONFIG_DIR=\"${{AZURE_CONFIG_DIR:-{config_dir}}}\"\n"
        f"PYTHONPATH={shlex.quote(str(package_root))}\"${{PYTHONPATH:+:$PYTHONPATH}}\"\n"
        "export AZURE_CONFIG_DIR PYTHONPATH\n"
        f"exec {shlex.quote(sys.executable)} -m cicd_tools.sandbox.identity.azcli \"$@\"\n"
    )


def _azure_cli(base: Mapping[str, str], state_dir: Path, layout: SandboxLayout) -> dict[str, str]:
    config_dir = state_dir / "azure"
    client_id = client_id_of(layout.ci_principal)
    profile = {
        "installationId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cicd-tools-sandbox:{state_dir}")),
        "subscriptions": [{
            "id": layout.subscription_id, "name": "cicd-tools sandbox", "state": "Enabled",
            "user": {"name": client_id, "type": "servicePrincipal"}, "isDefault": True,
            "tenantId": SANDBOX_TENANT, "environmentName": "AzureCloud", "homeTenantId": SANDBOX_TENANT,
            "managedByTenants": [],
        }],
    }
    _write_private(config_dir / PROFILE_FILE, json.dumps(profile, indent=2))
    login = {
        "authority": base["CICD_ARM_ENDPOINT"], "tenant": SANDBOX_TENANT, "clientId": client_id,
        "clientSecret": client_secret_of(base["IDENTITY_HEADER"], layout.ci_principal),
        "caBundle": base["REQUESTS_CA_BUNDLE"], "subscription": layout.subscription_id,
    }
    _write_private(config_dir / LOGIN_FILE, json.dumps(login, indent=2))
    bin_dir = state_dir / "bin"
    _write_private(bin_dir / "az", az_shim_text(config_dir), mode=0o700)
    path = base.get("PATH") or os.environ.get("PATH", "")
    return {"AZURE_CONFIG_DIR": str(config_dir), "PATH": f"{bin_dir}{os.pathsep}{path}" if path else str(bin_dir)}


def _workload_identity(base: Mapping[str, str], state_dir: Path, layout: SandboxLayout) -> dict[str, str]:
    token_file = state_dir / "identity" / GITHUB_TOKEN_FILE
    _write_private(token_file, github_oidc_token(key=signing_key(base[SECRET_ENV])))
    return {
        "AZURE_CLIENT_ID": client_id_of(layout.ci_principal),
        "AZURE_TENANT_ID": SANDBOX_TENANT,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_AUTHORITY_HOST": base["CICD_ARM_ENDPOINT"],
        "ACTIONS_ID_TOKEN_REQUEST_URL": github_request_url(base["CICD_ARM_ENDPOINT"]),
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": github_request_token(base["IDENTITY_HEADER"]),
    }


def _azure_pipelines(base: Mapping[str, str], state_dir: Path, layout: SandboxLayout) -> dict[str, str]:
    return {
        "SYSTEM_OIDCREQUESTURI": oidc_request_uri(base["CICD_ARM_ENDPOINT"]),
        "SYSTEM_ACCESSTOKEN": system_access_token(base["IDENTITY_HEADER"]),
        "AZURESUBSCRIPTION_CLIENT_ID": client_id_of(layout.ci_principal),
        "AZURESUBSCRIPTION_TENANT_ID": SANDBOX_TENANT,
        "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": ADO_SERVICE_CONNECTION_ID,
        "AZURE_AUTHORITY_HOST": base["CICD_ARM_ENDPOINT"],
    }


def credential_env(
    mode: str, base: Mapping[str, str], state_dir: Path, layout: SandboxLayout | None = None
) -> tuple[dict[str, str], list[str]]:
    """(variables to export, variables to unset) for ``mode``; writes the files the mode needs into ``state_dir``.

    ``base`` is the sandbox's own environment (``Sandbox.env()`` / ``sandbox.json``). Raises: ValueError for an
    unknown mode.
    """
    if mode not in CREDENTIAL_MODES:
        raise ValueError(f"unknown credential {mode!r}; choose one of {', '.join(CREDENTIAL_MODES)}")
    layout = layout or SandboxLayout()
    if mode == DEFAULT_MODE:  # the sandbox's own variables already are the managed-identity ones
        env = dict(base)
    else:
        builders = {"azure-cli": _azure_cli, "workload-identity": _workload_identity,
                    "azure-pipelines": _azure_pipelines}
        env = {k: v for k, v in base.items() if k not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
        env.update(builders[mode](base, state_dir, layout))
    env["CICD_CREDENTIAL"] = mode
    unset = [name for name in MODE_VARIABLES if name not in env]
    return env, unset
