"""Microsoft.ContainerService managedClusters, read-only: the AKS cluster behind the Kubernetes compute.

What preflight reads: ``properties.oidcIssuerProfile`` (``enabled``, ``issuerURL``) and
``properties.securityProfile.workloadIdentity.enabled``. Both follow the topology switches (Terraform's
``oidc_issuer_enabled`` / ``workload_identity_enabled`` default to false: the field's first missing link).
Writes answer an explicit 501.
"""

from __future__ import annotations

import uuid
from typing import Any

from cicd_tools.sandbox.armbase import not_implemented, read_access, resource_not_found
from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT, principal_oid
from cicd_tools.sandbox.layout import PROVISIONED_AT
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response
from cicd_tools.sandbox.world.topology import oidc_issuer_url, topology

PROVIDER = "Microsoft.ContainerService"
CLUSTER = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
           r"/providers/Microsoft\.ContainerService/managedClusters/(?P<cluster>[^/]+)")


def cluster_body(hub: Hub) -> dict[str, Any]:
    """The cluster as ARM shows it (the subset preflight and the portal read)."""
    layout, topo = hub.layout, topology(hub).snapshot()
    oidc: dict[str, Any] = {"enabled": topo.oidc_issuer_enabled}
    if topo.oidc_issuer_enabled:
        oidc["issuerURL"] = oidc_issuer_url(hub)
    return {
        "id": layout.aks_cluster_id,
        "name": layout.aks_cluster,
        "type": f"{PROVIDER}/ManagedClusters",
        "location": layout.location,
        "identity": {"type": "SystemAssigned", "principalId": principal_oid(f"aks:{layout.aks_cluster}"),
                     "tenantId": SANDBOX_TENANT},
        "sku": {"name": "Base", "tier": "Standard"},
        "systemData": {"createdAt": PROVISIONED_AT},
        "properties": {
            "provisioningState": "Succeeded",
            "powerState": {"code": "Running"},
            "kubernetesVersion": "1.31.2",
            "dnsPrefix": layout.aks_cluster,
            "fqdn": f"{layout.aks_cluster}-{uuid.uuid5(uuid.NAMESPACE_URL, layout.aks_cluster).hex[:8]}"
                    f".hcp.{layout.location}.azmk8s.io",
            "agentPoolProfiles": [
                {"name": "system", "count": 1, "vmSize": "Standard_D4s_v5", "mode": "System", "osType": "Linux"},
                {"name": "gpua100", "count": 1, "vmSize": "Standard_NC24ads_A100_v4", "mode": "User",
                 "osType": "Linux"},
                {"name": "gput4", "count": 1, "vmSize": "Standard_NC4as_T4_v3", "mode": "User", "osType": "Linux"},
            ],
            "oidcIssuerProfile": oidc,
            "securityProfile": {"workloadIdentity": {"enabled": topo.workload_identity_enabled}},
        },
    }


def get_cluster(req: Request, hub: Hub) -> Response:
    read_access(req, hub, hub.layout.aks_cluster_id, f"{PROVIDER}/managedClusters/read")
    if req.params["cluster"].lower() != hub.layout.aks_cluster.lower():
        raise resource_not_found(hub, f"{PROVIDER}/managedClusters", req.params["cluster"])
    return json_response(200, cluster_body(hub))


routes = [
    Route("GET", CLUSTER, get_cluster),
    *(Route(method, CLUSTER, not_implemented) for method in ("PUT", "PATCH", "DELETE")),
]
