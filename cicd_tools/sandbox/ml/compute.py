"""Microsoft.MachineLearningServices workspace computes: one Kubernetes compute (an attached AKS cluster).

The shape is the service's ``ComputeResource`` with ``computeType: Kubernetes`` and
``KubernetesProperties`` (namespace, ``defaultInstanceType``, ``instanceTypes`` with the CPU / GPU /
memory requests and limits of each InstanceType custom resource). A Kubernetes compute carries one
identity (system- or user-assigned, AZURE_FACTS.md §6); the sandbox's is system-assigned, its principal
is ``SandboxLayout.compute_principal`` and it holds no data role until a test assigns one.

The job provider reads ``compute_spec`` to validate ``computeId`` and ``resources.instanceType``;
instance types are validated, never emulated (no GPU is needed to run a job here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.sandbox.armbase import authenticate, require_dated_api_version
from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT
from cicd_tools.sandbox.layout import resolve_principal
from cicd_tools.sandbox.ml.workspace import PROVIDER, WS, _target, _user_error, _workspace_id
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, Route, arm_error, json_response

COMPUTE = WS + r"/computes/(?P<compute>[^/]+)"
DEFAULT_INSTANCE_TYPE = "defaultinstancetype"
COMPUTE_ID_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)/computes/(?P<compute>[^/]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class InstanceType:
    """One InstanceType custom resource of the cluster: what a pod asks for and may use at most."""

    name: str
    cpu: str
    memory: str
    gpu: int = 0
    node_selector: dict[str, str] = field(default_factory=dict)
    nodes: int = 4  # nodes of the cluster's pool that fit it: a job asking more instances waits in Queued

    def to_json(self) -> dict[str, Any]:
        requests: dict[str, Any] = {"cpu": self.cpu, "memory": self.memory}
        limits: dict[str, Any] = {"cpu": self.cpu, "memory": self.memory}
        if self.gpu:
            limits["nvidia.com/gpu"] = str(self.gpu)  # resource quantities are strings
        return {"nodeSelector": dict(self.node_selector) or None,
                "resources": {"requests": requests, "limits": limits}}


INSTANCE_TYPES: tuple[InstanceType, ...] = (
    InstanceType(DEFAULT_INSTANCE_TYPE, "1", "4Gi"),
    InstanceType("cpu-small", "2", "8Gi", node_selector={"agentpool": "cpu"}),
    InstanceType("gpu-t4", "4", "28Gi", 1, {"agentpool": "gput4"}, nodes=2),
    InstanceType("gpu-a100", "24", "220Gi", 1, {"agentpool": "gpua100"}, nodes=1),
)


@dataclass(frozen=True)
class ComputeSpec:
    """What the job provider needs to know about a compute."""

    name: str
    compute_type: str
    instance_types: tuple[InstanceType, ...]
    default_instance_type: str
    principal: str  # the compute identity's name (as role assignments name principals)

    @property
    def principal_id(self) -> str:
        return resolve_principal(self.principal)

    def instance_type(self, name: str) -> InstanceType | None:
        # Kubernetes resource names are lowercase; the service matches case-insensitively.
        return next((t for t in self.instance_types if t.name.lower() == name.lower()), None)


def computes(hub: Hub) -> dict[str, ComputeSpec]:
    """The workspace's computes by name (the sandbox's is fixed: one attached AKS cluster)."""
    layout = hub.layout
    return {layout.compute: ComputeSpec(layout.compute, "Kubernetes", INSTANCE_TYPES, DEFAULT_INSTANCE_TYPE,
                                        layout.compute_principal)}


def compute_spec(hub: Hub, name: str) -> ComputeSpec | None:
    return next((c for n, c in computes(hub).items() if n.lower() == name.lower()), None)


def compute_id(hub: Hub, name: str) -> str:
    return f"{_workspace_id(hub, hub.layout.workspace)}/computes/{name}"


def _compute_body(hub: Hub, spec: ComputeSpec) -> dict[str, Any]:
    layout = hub.layout
    return {
        "id": compute_id(hub, spec.name),
        "name": spec.name,
        "type": f"{PROVIDER}/workspaces/computes",
        "location": layout.location,
        "tags": {},
        "identity": {"type": "SystemAssigned", "principalId": spec.principal_id, "tenantId": SANDBOX_TENANT},
        "properties": {
            "computeType": spec.compute_type,
            "computeLocation": layout.location,
            "provisioningState": "Succeeded",
            "description": "Attached AKS cluster with the Azure ML extension (sandbox).",
            "resourceId": f"{layout.resource_group_id}/providers/Microsoft.ContainerService/managedClusters/"
                          f"{layout.aks_cluster}",
            "isAttachedCompute": True,
            "disableLocalAuth": True,
            "provisioningErrors": None,
            "properties": {
                "namespace": "azureml",
                "defaultInstanceType": spec.default_instance_type,
                "instanceTypes": {t.name: t.to_json() for t in spec.instance_types},
                "extensionInstanceReleaseTrain": "stable",
            },
        },
    }


def get_compute(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "computes/read")
    spec = compute_spec(hub, req.params["compute"])
    if spec is None:
        raise _user_error(404, f"Compute {req.params['compute']} not found in workspace {ws}.", "NotFound")
    return json_response(200, _compute_body(hub, spec))


def list_computes(req: Request, hub: Hub) -> Response:
    _target(req, hub, "computes/read")
    return json_response(200, {"value": [_compute_body(hub, s) for s in computes(hub).values()]})


# VirtualMachineSizes_List: a few sizes with the figures of Azure's VM size pages (DSv2, Edsv4, NCasT4_v3 series).
VM_SIZES: tuple[dict[str, Any], ...] = (
    {"name": "Standard_DS3_v2", "family": "standardDSv2Family", "vCPUs": 4, "gpus": 0, "osVhdSizeMB": 1047552,
     "maxResourceVolumeMB": 28672, "memoryGB": 14.0, "lowPriorityCapable": True, "premiumIO": True,
     "supportedComputeTypes": ["ComputeInstance", "AmlCompute"]},
    {"name": "Standard_E4ds_v4", "family": "standardEDSv4Family", "vCPUs": 4, "gpus": 0, "osVhdSizeMB": 1047552,
     "maxResourceVolumeMB": 153600, "memoryGB": 32.0, "lowPriorityCapable": True, "premiumIO": True,
     "supportedComputeTypes": ["ComputeInstance", "AmlCompute"]},
    {"name": "Standard_NC4as_T4_v3", "family": "standardNCASv3_T4Family", "vCPUs": 4, "gpus": 1,
     "osVhdSizeMB": 1047552, "maxResourceVolumeMB": 180224, "memoryGB": 28.0, "lowPriorityCapable": True,
     "premiumIO": True, "supportedComputeTypes": ["ComputeInstance", "AmlCompute"]},
)


def list_vm_sizes(req: Request, hub: Hub) -> Response:
    """``compute.list_sizes()``: the VM sizes of a location (any authenticated caller of the subscription)."""
    authenticate(req, hub)
    require_dated_api_version(req)
    if req.params["sub"].lower() != hub.layout.subscription_id.lower():
        raise HttpError(arm_error(404, "SubscriptionNotFound", f"The subscription '{req.params['sub']}' could not "
                                  "be found."))
    return json_response(200, {"value": [dict(size) for size in VM_SIZES]})


routes = [
    Route("GET", WS + r"/computes", list_computes),
    Route("GET", COMPUTE, get_compute),
    Route("GET", r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices/locations/"
          r"(?P<location>[^/]+)/vmSizes", list_vm_sizes),
]
