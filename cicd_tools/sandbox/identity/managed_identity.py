"""Microsoft.ManagedIdentity userAssignedIdentities and their federatedIdentityCredentials, read-only.

The Azure ML extension's identity: its ``principalId`` holds the data role on the workspace storage,
and its federated credentials must name the cluster's OIDC issuer, the ``azureml`` service accounts
and the audience ``api://AzureADTokenExchange``. Writes answer an explicit 501.
"""

from __future__ import annotations

import uuid
from typing import Any

from cicd_tools.sandbox.armbase import not_implemented, read_access, resource_not_found
from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT, principal_oid
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response
from cicd_tools.sandbox.world.topology import topology

PROVIDER = "Microsoft.ManagedIdentity"
IDENTITY = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
            r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<identity>[^/]+)")
FEDERATED = IDENTITY + r"/federatedIdentityCredentials"


def identity_body(hub: Hub) -> dict[str, Any]:
    layout = hub.layout
    return {
        "id": layout.aks_identity_id,
        "name": layout.aks_identity,
        "type": f"{PROVIDER}/userAssignedIdentities",
        "location": layout.location,
        "tags": {},
        "properties": {
            "tenantId": SANDBOX_TENANT,
            "principalId": principal_oid(layout.aks_identity),
            "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"client:{layout.aks_identity}")),
        },
    }


def _identity(req: Request, hub: Hub) -> None:
    read_access(req, hub, hub.layout.aks_identity_id, f"{PROVIDER}/userAssignedIdentities/read")
    name = req.params["identity"]
    if name.lower() != hub.layout.aks_identity.lower() or not topology(hub).snapshot().identity_exists:
        raise resource_not_found(hub, f"{PROVIDER}/userAssignedIdentities", name)


def get_identity(req: Request, hub: Hub) -> Response:
    _identity(req, hub)
    return json_response(200, identity_body(hub))


def list_federated(req: Request, hub: Hub) -> Response:
    _identity(req, hub)
    base = f"{hub.layout.aks_identity_id}/federatedIdentityCredentials"
    items = [{
        "id": f"{base}/{cred['name']}",
        "name": cred["name"],
        "type": f"{PROVIDER}/userAssignedIdentities/federatedIdentityCredentials",
        "properties": {"issuer": cred["issuer"], "subject": cred["subject"], "audiences": list(cred["audiences"])},
    } for cred in topology(hub).snapshot().federated_credentials]
    return json_response(200, {"value": items})


routes = [
    Route("GET", IDENTITY, get_identity),
    Route("GET", FEDERATED, list_federated),
    *(Route(method, IDENTITY, not_implemented) for method in ("PUT", "PATCH", "DELETE")),
    *(Route(method, FEDERATED + r"/(?P<credential>[^/]+)", not_implemented) for method in ("PUT", "DELETE")),
]
