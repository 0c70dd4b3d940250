"""What every link reads with: the targets (which resources), the ARM reader, the RBAC cache, the time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cicd_tools.preflight.arm import ArmReader, ArmReadError
from cicd_tools.preflight.rbac import Rbac

STORAGE_API = "2025-06-01"
ML_API = "2024-04-01"
ADF_API = "2018-06-01"


@dataclass(frozen=True)
class Targets:
    """The resources of the chain (names as the toolkit's other commands take them)."""

    subscription_id: str
    resource_group: str
    storage_account: str
    container: str
    workspace: str
    compute: str
    factory: str | None = None  # None: ADF is not used; its link and the CI's factory role are skipped
    aks_cluster: str | None = None  # None: the cluster the compute is attached to
    adf_dir: Path | None = None  # the factory's Git folder: instance types and WebActivity connectVia
    manage_firewall: bool = True  # CI opens IP rules itself (needs storageAccounts/write, public access)
    fresh_minutes: float = 30.0

    @property
    def group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    @property
    def account_id(self) -> str:
        return f"{self.group_id}/providers/Microsoft.Storage/storageAccounts/{self.storage_account}"

    @property
    def container_scope(self) -> str:
        return f"{self.account_id}/blobServices/default/containers/{self.container}"

    @property
    def workspace_id(self) -> str:
        return f"{self.group_id}/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"

    @property
    def compute_id(self) -> str:
        return f"{self.workspace_id}/computes/{self.compute}"

    @property
    def factory_id(self) -> str:
        return f"{self.group_id}/providers/Microsoft.DataFactory/factories/{self.factory}"

    def cluster_id(self, name: str) -> str:
        return f"{self.group_id}/providers/Microsoft.ContainerService/managedClusters/{name}"


@dataclass
class Context:
    """One preflight run's shared state."""

    reader: ArmReader
    targets: Targets
    now: datetime
    rbac: Rbac = field(init=False)

    def __post_init__(self) -> None:
        self.rbac = Rbac(self.reader)

    def read(self, path: str, api_version: str) -> dict[str, Any] | ArmReadError:
        """A resource, or the read error to report (the reader caches answers)."""
        try:
            return self.reader.get(path, api_version)
        except ArmReadError as err:
            return err


def short(resource_id: str) -> str:
    """The last type/name pair of an ARM id, for evidence lines (`storageAccounts/mlopssandboxsa`)."""
    parts = [p for p in resource_id.split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else resource_id


def role_fix(principal_id: str, role: str, scope: str) -> str:
    return (f'az role assignment create --assignee-object-id {principal_id} --assignee-principal-type '
            f'ServicePrincipal --role "{role}" --scope {scope}')


def read_failure(what: str, err: ArmReadError) -> str:
    if err.status == 404:
        return f"{what} does not exist ({err.code}: {err.message})"
    if err.status == 403:
        return f"cannot read {what}: {err.code} (give the CI identity Reader on it to let preflight see it)"
    return f"cannot read {what}: {err.summary}: {err.message}"
