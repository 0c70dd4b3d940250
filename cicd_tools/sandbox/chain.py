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

from cicd_tools.sandbox.server import Hub
from cicd_tools.sandbox.state import BLOB_READ, BLOB_WRITE

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
    from cicd_tools.sandbox.aml_compute import compute_spec

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


# Each provider that models a link adds its check here (the preflight resources add the AKS ones).
CHECKS: list[Check] = [compute_identity_data_role]


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
