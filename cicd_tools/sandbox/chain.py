"""The identity and network chain behind an Azure ML job's data access, as the sandbox judges it.

One verdict shared by the providers: the AML job runner asks it before a job reads or writes workspace
storage (data inputs, outputs), and the preflight resources (role assignments, managed identities,
the AKS cluster and its Azure ML extension, the workspace's ``systemDatastoresAuthMode``) feed it. A
broken link answers the reason the field shows (``ScriptExecution.StreamAccess.Authentication``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cicd_tools.sandbox.server import Hub


@dataclass(frozen=True)
class AccessDenied:
    """Why a job on ``compute`` cannot reach the workspace storage: the service's error code and message."""

    code: str  # e.g. "ScriptExecution.StreamAccess.Authentication"
    message: str


def job_storage_access(hub: Hub, compute: str) -> AccessDenied | None:
    """None when a job on ``compute`` can read and write the workspace storage; the failure otherwise.

    Links judged (each provider that models one adds its check here): the compute identity's data
    role on the workspace storage account, shared-key access versus the workspace's
    ``systemDatastoresAuthMode``, and on AKS the extension identity and its federated credentials.
    """
    return None
