"""Microsoft.KubernetesConfiguration extensions on the AKS cluster, read-only: the Azure ML extension.

Its ``configurationSettings`` carry the identity the extension's pods use for workspace storage:
``identityType`` (UserAssigned | SystemAssigned) and ``identityResourceId``. The field's second missing
link was ``identityType`` unset; the topology switches reproduce that (the keys are then absent).
Writes answer an explicit 501.
"""

from __future__ import annotations

from typing import Any

from cicd_tools.sandbox.aks.containerservice import CLUSTER
from cicd_tools.sandbox.armbase import not_implemented, read_access, resource_not_found
from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT, principal_oid
from cicd_tools.sandbox.layout import PROVISIONED_AT
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response
from cicd_tools.sandbox.world.topology import AZUREML_EXTENSION_NAME, AZUREML_EXTENSION_TYPE, topology

PROVIDER = "Microsoft.KubernetesConfiguration"
EXTENSIONS = CLUSTER + r"/providers/Microsoft\.KubernetesConfiguration/extensions"


def extension_body(hub: Hub) -> dict[str, Any]:
    """The Azure ML extension as ARM shows it."""
    topo = topology(hub).snapshot()
    settings = {"enableTraining": "True", "enableInference": "False", "allowInsecureConnections": "False",
                "installNvidiaDevicePlugin": "True", "installDcgmExporter": "True",
                "clusterPurpose": "DevTest"}
    if topo.extension_identity_type is not None:
        settings["identityType"] = topo.extension_identity_type
    if topo.extension_identity_id is not None:
        settings["identityResourceId"] = topo.extension_identity_id
    ext_id = f"{hub.layout.aks_cluster_id}/providers/{PROVIDER}/extensions/{AZUREML_EXTENSION_NAME}"
    return {
        "id": ext_id,
        "name": AZUREML_EXTENSION_NAME,
        "type": f"{PROVIDER}/extensions",
        "identity": {"type": "SystemAssigned", "principalId": principal_oid(f"ext:{ext_id}"),
                     "tenantId": SANDBOX_TENANT},
        "systemData": {"createdAt": PROVISIONED_AT, "lastModifiedAt": PROVISIONED_AT},
        "properties": {
            "extensionType": AZUREML_EXTENSION_TYPE,
            "autoUpgradeMinorVersion": True,
            "releaseTrain": "stable",
            "version": "1.1.70",
            "scope": {"cluster": {"releaseNamespace": "azureml"}},
            "configurationSettings": settings,
            "configurationProtectedSettings": {},
            "provisioningState": "Succeeded",
            "statuses": [],
        },
    }


def _cluster(req: Request, hub: Hub) -> None:
    read_access(req, hub, hub.layout.aks_cluster_id, f"{PROVIDER}/extensions/read")
    if req.params["cluster"].lower() != hub.layout.aks_cluster.lower():
        raise resource_not_found(hub, "Microsoft.ContainerService/managedClusters", req.params["cluster"])


def list_extensions(req: Request, hub: Hub) -> Response:
    _cluster(req, hub)
    items = [extension_body(hub)] if topology(hub).snapshot().extension_installed else []
    return json_response(200, {"value": items})


def get_extension(req: Request, hub: Hub) -> Response:
    _cluster(req, hub)
    name = req.params["extension"]
    if name.lower() != AZUREML_EXTENSION_NAME or not topology(hub).snapshot().extension_installed:
        raise resource_not_found(hub, f"{PROVIDER}/extensions", name)
    return json_response(200, extension_body(hub))


_ONE = EXTENSIONS + r"/(?P<extension>[^/]+)"
routes = [
    Route("GET", EXTENSIONS, list_extensions),
    Route("GET", _ONE, get_extension),
    *(Route(method, _ONE, not_implemented) for method in ("PUT", "PATCH", "DELETE")),
]
