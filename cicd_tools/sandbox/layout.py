"""The sandbox cloud as provisioned: names, the simulated IPs, storage accounts, built-in roles and assignments.

``CloudState`` (``sandbox/state.py``) starts from these and changes them under its lock; everything here is a
pure value or a pure function.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT, principal_oid

AGENT_IP = "52.151.10.20"  # the simulated public IP of the CI agent (any public IPv4 would do)
PRIVATE_ENDPOINT_IP = "10.20.1.4"  # the managed private endpoint's address inside the managed VNet
FACTORY_PUBLIC_IP = "20.61.98.17"  # the Data Factory's public egress (default Azure IR, managed VNet without PE)

# Role definitions as Azure writes them: action patterns (management plane) and data actions.
BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
BLOB_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
ROLE_DEFINITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Owner": (("*",), ()),
    "Contributor": (("*",), ()),  # management only: Contributor grants no blob data access
    "Reader": (("*/read",), ()),
    "Storage Account Contributor": (("Microsoft.Storage/storageAccounts/*",), ()),
    "Storage Blob Data Owner": ((), ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",)),
    "Storage Blob Data Contributor": (
        (),
        ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",),
    ),
    "Storage Blob Data Reader": ((), (BLOB_READ,)),
    "AzureML Data Scientist": (("Microsoft.MachineLearningServices/workspaces/*",), ()),
    "Data Factory Contributor": (("Microsoft.DataFactory/factories/*",), ()),
}
# The built-in role definition GUIDs Azure uses (roleDefinitionId = /subscriptions/{sub}/providers/
# Microsoft.Authorization/roleDefinitions/{guid}), so role assignments read over ARM look like the real ones.
ROLE_IDS: dict[str, str] = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
    "Data Factory Contributor": "673868aa-7521-48a0-acc6-0f60742d39f5",
}
PROVISIONED_AT = "2026-01-05T09:00:00Z"  # when the pre-provisioned resources and roles were "created"


@dataclass(frozen=True)
class SandboxLayout:
    """The pre-provisioned names of the sandbox cloud."""

    subscription_id: str = "5a4db0c0-0000-4000-8000-000000000001"
    resource_group: str = "rg-mlops-sandbox"
    location: str = "westeurope"
    storage_account: str = "mlopssandboxsa"  # private: defaultAction Deny, shared key disabled
    workspace_storage_account: str = "mlwsandboxstore"  # the workspace's default storage (SAS uploads)
    defender_storage_account: str = "mlopsdefendersa"  # Deny + Defender's StorageDataScanner access rule
    workspace: str = "mlw-sandbox"
    factory: str = "adf-sandbox"
    ci_principal: str = "ci-pipeline"
    factory_principal: str = "adf-factory"
    compute: str = "aks-gpu"  # the workspace's Kubernetes compute (an attached AKS cluster)
    aks_cluster: str = "aks-mlops"  # the AKS cluster behind it
    aks_identity: str = "id-aml-aks"  # the user-assigned identity of the cluster's Azure ML extension
    compute_principal: str = "aks-gpu-identity"  # the compute's system-assigned identity (no data role preset)

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    @property
    def workspace_id(self) -> str:
        return f"{self.resource_group_id}/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"

    @property
    def aks_cluster_id(self) -> str:
        return f"{self.resource_group_id}/providers/Microsoft.ContainerService/managedClusters/{self.aks_cluster}"

    @property
    def aks_identity_id(self) -> str:
        return (f"{self.resource_group_id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
                f"{self.aks_identity}")

    def account_id(self, account: str) -> str:
        return f"{self.resource_group_id}/providers/Microsoft.Storage/storageAccounts/{account}"


def account_key(account: str, secret: str) -> str:
    """The base64 key of an account in the sandbox whose secret is ``secret`` (new with each sandbox; Azurite's
    data does not depend on it, so blobs survive a restart)."""
    return base64.b64encode(hmac.new(secret.encode(), f"cicd-tools-sandbox:account-key:{account}".encode(),
                                     hashlib.sha512).digest()).decode()


def resolve_principal(principal: str) -> str:
    """A principal's object id: a GUID is taken as is, a name is mapped with ``principal_oid``."""
    try:
        return str(uuid.UUID(principal))
    except ValueError:
        return principal_oid(principal)


def scope_covers(scope: str, resource_id: str) -> bool:
    """True when an assignment at ``scope`` applies to ``resource_id`` (ARM ids are case-insensitive)."""
    outer, inner = scope.rstrip("/").lower(), resource_id.rstrip("/").lower()
    return inner == outer or inner.startswith(outer + "/")


def role_allows(role: str, action: str, *, data: bool) -> bool:
    """Whether ``role`` grants ``action`` (a data action when ``data``)."""
    actions, data_actions = ROLE_DEFINITIONS.get(role, ((), ()))
    patterns = data_actions if data else actions
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


@dataclass
class Account:
    """One storage account as ARM stores it (mutable; only ``CloudState`` touches it)."""

    name: str
    network_acls: dict[str, Any]
    allow_shared_key_access: bool | None
    public_network_access: str
    tags: dict[str, str] = field(default_factory=dict)
    kind: str = "StorageV2"
    sku: dict[str, str] = field(default_factory=lambda: {"name": "Standard_LRS", "tier": "Standard"})
    created: str = "2026-01-05T09:00:00.0000000Z"
    rule_since: dict[str, float] = field(default_factory=dict)  # rule_key -> when it first appeared
    rule_removed: dict[str, float] = field(default_factory=dict)  # rule_key -> when it disappeared
    previous_default_action: str = "Allow"  # in effect until ``default_action_since`` + the lag
    default_action_since: float = float("-inf")


@dataclass(frozen=True)
class RoleAssignment:
    principal: str
    principal_id: str
    role: str
    scope: str
    created_on: str = PROVISIONED_AT  # ARM's createdOn: preflight warns about fresh (unpropagated) ones

    @property
    def name(self) -> str:
        """The assignment's GUID name (stable per principal, role and scope)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.principal_id}|{self.role}|{self.scope.lower()}"))


def initial_accounts(layout: SandboxLayout) -> dict[str, Account]:
    def acls(default_action: str) -> dict[str, Any]:
        return {
            "bypass": "AzureServices",
            "defaultAction": default_action,
            "ipRules": [],
            "ipv6Rules": [],
            "virtualNetworkRules": [],
            "resourceAccessRules": [],
        }

    # Defender for Storage (malware scanning) adds this rule itself, subscription-scoped, as Azure shows it.
    defended = acls("Deny")
    defended["resourceAccessRules"] = [{
        "tenantId": SANDBOX_TENANT,
        "resourceId": f"/subscriptions/{layout.subscription_id}/providers/Microsoft.Security/datascanners"
                      "/StorageDataScanner",
    }]
    return {
        layout.storage_account: Account(
            layout.storage_account, acls("Deny"), allow_shared_key_access=False, public_network_access="Enabled"
        ),
        layout.workspace_storage_account: Account(
            layout.workspace_storage_account, acls("Allow"), allow_shared_key_access=None,
            public_network_access="Enabled",
        ),
        layout.defender_storage_account: Account(
            layout.defender_storage_account, defended, allow_shared_key_access=False, public_network_access="Enabled",
        ),
    }


def initial_assignments(layout: SandboxLayout) -> list[RoleAssignment]:
    def assign(principal: str, role: str, scope: str) -> RoleAssignment:
        return RoleAssignment(principal, resolve_principal(principal), role, scope)

    main = layout.account_id(layout.storage_account)
    # CI holds Contributor on the resource group (it manages the account, the workspace and the factory).
    return [
        assign(layout.ci_principal, "Contributor", layout.resource_group_id),
        assign(layout.ci_principal, "Storage Blob Data Contributor", main),
        assign(layout.ci_principal, "Storage Blob Data Contributor",
               layout.account_id(layout.workspace_storage_account)),
        assign(layout.factory_principal, "Storage Blob Data Reader", main),
        # The factory submits and reads Azure ML jobs; the extension identity mounts workspace data.
        assign(layout.factory_principal, "AzureML Data Scientist", layout.workspace_id),
        assign(layout.aks_identity, "Storage Blob Data Contributor",
               layout.account_id(layout.workspace_storage_account)),
    ]
