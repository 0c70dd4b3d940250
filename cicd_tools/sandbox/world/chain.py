"""The identity and network chain behind an Azure ML job's data access, as the sandbox judges it.

One verdict shared by the providers: the AML job runner asks it before a job reads or writes workspace
storage (code, data inputs, outputs), and the preflight resources (role assignments, managed identities,
the AKS cluster and its Azure ML extension, the workspace's ``systemDatastoresAuthMode``) feed it. A
broken link answers the reason the field shows (``ScriptExecution.StreamAccess.Authentication``).

The verdict is a list of small checks (``CHECKS``), each judging one link; the first that denies wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cicd_tools.sandbox.identity.identity import principal_oid
from cicd_tools.sandbox.layout import BLOB_READ, BLOB_WRITE
from cicd_tools.sandbox.server import Hub
from cicd_tools.sandbox.world.topology import AZUREML_SUBJECTS, TOKEN_EXCHANGE_AUDIENCE, oidc_issuer_url, topology

STREAM_AUTH = "ScriptExecution.StreamAccess.Authentication"


@dataclass(frozen=True)
class AccessDenied:
    """Why a job on ``compute`` cannot reach the workspace storage: the service's error code and message."""

    code: str  # e.g. "ScriptExecution.StreamAccess.Authentication"
    message: str


Check = Callable[[Hub, str], "AccessDenied | None"]


def compute_identity_data_role(hub: Hub, compute: str) -> AccessDenied | None:
    """Shared key disabled on the workspace storage: the compute identity needs a blob data role there.

    With shared-key access on, the extension reads through the datastore's account key and no role is
    needed; with it off, only an Entra token works, and the compute identity's role decides
    (AZURE_FACTS.md §6). Both read and write are needed: inputs are read, outputs written.
    """
    from cicd_tools.sandbox.ml.compute import compute_spec

    account = hub.layout.workspace_storage_account
    if hub.state.account(account).allow_shared_key_access is not False:
        return None
    spec = compute_spec(hub, compute)
    if spec is None:
        return None  # the job provider refuses unknown computes before asking
    scope = hub.layout.account_id(account)
    missing = [a for a in (BLOB_READ, BLOB_WRITE)
               if not hub.state.authorize(spec.principal_id, scope, a, data=True)]
    if not missing:
        return None
    return AccessDenied(STREAM_AUTH, (
        f"Failed to access the workspace datastore (storage account {account}) from compute {compute}: "
        f"authentication failed. Shared key access is disabled on the account and the compute identity "
        f"'{spec.principal}' (principal {spec.principal_id}) holds no Storage Blob Data role granting "
        f"{', '.join(a.rsplit('/', 1)[1] for a in missing)} on it. Assign 'Storage Blob Data Contributor' on "
        f"{scope} to the compute identity, or create the workspace with systemDatastoresAuthMode=identity."
    ))


def job_storage_access(hub: Hub, compute: str) -> AccessDenied | None:
    """None when a job on ``compute`` can read and write the workspace storage; the failure otherwise.

    Links judged (each provider that models one adds its check to ``CHECKS``): the compute identity's
    data role on the workspace storage account versus shared-key access, and on AKS the extension
    identity and its federated credentials.
    """
    for check in CHECKS:
        verdict = check(hub, compute)
        if verdict is not None:
            return verdict
    return None


def _denied(hub: Hub, why: str) -> AccessDenied:
    account = hub.layout.workspace_storage_account
    return AccessDenied(STREAM_AUTH, f"Failed to access the data in storage account '{account}': authentication "
                        f"failed. {why}")


def datastore_auth_denial(hub: Hub, compute: str) -> AccessDenied | None:
    """Key-based system datastores on a storage account that refuses shared key (any compute)."""
    mode = topology(hub).snapshot().system_datastores_auth_mode
    account = hub.state.account(hub.layout.workspace_storage_account)
    if mode.lower() == "accesskey" and account.allow_shared_key_access is False:
        return _denied(hub, "Key based authentication is not permitted on this storage account "
                       "(the workspace's system datastores use account keys: systemDatastoresAuthMode accessKey).")
    return None


def aks_identity_denial(hub: Hub, compute: str) -> AccessDenied | None:
    """On the Kubernetes compute with identity-based datastores: the extension identity must federate and hold a
    data role on the workspace storage."""
    layout, topo = hub.layout, topology(hub).snapshot()
    if compute.lower() != layout.compute.lower():
        return None
    account = hub.state.account(layout.workspace_storage_account)
    if topo.system_datastores_auth_mode.lower() == "accesskey" and account.allow_shared_key_access is not False:
        return None  # key-based datastores: the pods mount with the account key, no identity involved
    if not topo.extension_installed:
        return _denied(hub, "The Azure ML extension is not installed on the cluster.")
    if not topo.extension_identity_type or not topo.extension_identity_id:
        return _denied(hub, "The Azure ML extension has no identity (identityType is not set).")
    if topo.extension_identity_id.lower() != layout.aks_identity_id.lower() or not topo.identity_exists:
        return _denied(hub, f"The extension identity {topo.extension_identity_id} does not exist.")
    if not (topo.oidc_issuer_enabled and topo.workload_identity_enabled):
        return _denied(hub, "The cluster has no OIDC issuer / workload identity, so the pods cannot exchange "
                       "their service account token.")
    issuer = oidc_issuer_url(hub)
    for subject in AZUREML_SUBJECTS:
        if not any(c["issuer"] == issuer and c["subject"] == subject and TOKEN_EXCHANGE_AUDIENCE in c["audiences"]
                   for c in topo.federated_credentials):
            return _denied(hub, f"AADSTS70021: No matching federated identity record found for presented assertion "
                           f"(issuer {issuer}, subject {subject}).")
    oid, account_id = principal_oid(layout.aks_identity), layout.account_id(layout.workspace_storage_account)
    for action in (BLOB_READ, BLOB_WRITE):
        if not hub.state.authorize(oid, account_id, action, data=True):
            return _denied(hub, f"AuthorizationPermissionMismatch: the identity {layout.aks_identity} has no "
                           "data role on the storage account.")
    return None


# Most upstream first: a workspace setting fixed at creation, then the AKS identity chain.
CHECKS: list[Check] = [datastore_auth_denial, aks_identity_denial, compute_identity_data_role]
