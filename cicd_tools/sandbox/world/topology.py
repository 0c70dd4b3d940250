"""The sandbox's AKS side of the chain: the cluster's OIDC issuer, its Azure ML extension, the extension's
user-assigned identity and federated credentials, and the workspace's ``systemDatastoresAuthMode``.

Kept beside the hub (like ``aml_state``) because four providers read it (ContainerService,
KubernetesConfiguration, ManagedIdentity, MachineLearningServices) and ``chain.job_storage_access``
judges a job's data access from it. Defaults are a healthy chain; the control endpoint
(``/_sandbox/preflight/...``) and the named scenarios break it the ways the field does.
"""

from __future__ import annotations

import copy
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT
from cicd_tools.sandbox.server import Hub

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
AZUREML_SUBJECTS = ("system:serviceaccount:azureml:default", "system:serviceaccount:azureml:training")
AZUREML_EXTENSION_TYPE = "microsoft.azureml.kubernetes"
AZUREML_EXTENSION_NAME = "azureml"
AUTH_MODES = ("accessKey", "identity")


def oidc_issuer_url(hub: Hub) -> str:
    """The cluster's issuer URL, shaped like AKS's (``https://{region}.oic.prod-aks.azure.com/{tenant}/{id}/``)."""
    cluster_guid = uuid.uuid5(uuid.NAMESPACE_URL, hub.layout.aks_cluster_id.lower())
    return f"https://{hub.layout.location}.oic.prod-aks.azure.com/{SANDBOX_TENANT}/{cluster_guid}/"


@dataclass
class Topology:
    """What can be switched on the AKS side; ``None`` for the identity fields means unset (as the field saw)."""

    oidc_issuer_enabled: bool = True
    workload_identity_enabled: bool = True
    extension_installed: bool = True
    extension_identity_type: str | None = "UserAssigned"
    extension_identity_id: str | None = None  # filled with the layout's identity at creation
    identity_exists: bool = True
    federated_credentials: list[dict[str, Any]] = field(default_factory=list)
    system_datastores_auth_mode: str = "identity"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> Topology:
        with self.lock:
            return Topology(self.oidc_issuer_enabled, self.workload_identity_enabled, self.extension_installed,
                            self.extension_identity_type, self.extension_identity_id, self.identity_exists,
                            copy.deepcopy(self.federated_credentials), self.system_datastores_auth_mode)


def healthy_topology(hub: Hub) -> Topology:
    """The default: workload identity on, extension bound to the identity, both azureml service accounts federated."""
    issuer = oidc_issuer_url(hub)
    creds = [{"name": f"azureml-{subject.rsplit(':', 1)[1]}", "issuer": issuer, "subject": subject,
              "audiences": [TOKEN_EXCHANGE_AUDIENCE]} for subject in AZUREML_SUBJECTS]
    return Topology(extension_identity_id=hub.layout.aks_identity_id, federated_credentials=creds)


_STATES: weakref.WeakKeyDictionary[Any, Topology] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def topology(hub: Hub) -> Topology:
    """This sandbox's topology (created healthy on first use)."""
    with _STATES_LOCK:
        state = _STATES.get(hub.state)
        if state is None:
            state = _STATES[hub.state] = healthy_topology(hub)
        return state


def reset(hub: Hub) -> None:
    """Back to the healthy topology (the provider reset hook ``Sandbox.reset`` calls)."""
    with _STATES_LOCK:
        _STATES[hub.state] = healthy_topology(hub)


# camelCase control field -> Topology attribute, with the type it must have
FIELDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "oidcIssuerEnabled": ("oidc_issuer_enabled", (bool,)),
    "workloadIdentityEnabled": ("workload_identity_enabled", (bool,)),
    "extensionInstalled": ("extension_installed", (bool,)),
    "extensionIdentityType": ("extension_identity_type", (str, type(None))),
    "extensionIdentityId": ("extension_identity_id", (str, type(None))),
    "identityExists": ("identity_exists", (bool,)),
    "federatedCredentials": ("federated_credentials", (list,)),
    "systemDatastoresAuthMode": ("system_datastores_auth_mode", (str,)),
}


def update(hub: Hub, changes: dict[str, Any]) -> Topology:
    """Apply camelCase ``changes`` (see FIELDS). Raises: ValueError naming a bad field or value."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown topology fields: {', '.join(sorted(unknown))}; known: {', '.join(FIELDS)}")
    for key, value in changes.items():
        if not isinstance(value, FIELDS[key][1]):
            raise ValueError(f"{key} must be {' or '.join(t.__name__ for t in FIELDS[key][1])}")
    mode = changes.get("systemDatastoresAuthMode")
    if mode is not None and mode not in AUTH_MODES:
        raise ValueError(f"systemDatastoresAuthMode must be one of {', '.join(AUTH_MODES)}")
    for cred in changes.get("federatedCredentials") or []:
        if not isinstance(cred, dict) or not {"name", "issuer", "subject"} <= set(cred):
            raise ValueError("each federated credential needs name, issuer and subject (audiences optional)")
        cred.setdefault("audiences", [TOKEN_EXCHANGE_AUDIENCE])
    state = topology(hub)
    with state.lock:
        for key, value in changes.items():
            setattr(state, FIELDS[key][0], copy.deepcopy(value))
    return state.snapshot()


def topology_json(hub: Hub) -> dict[str, Any]:
    """The topology as the control endpoint shows it."""
    snap = topology(hub).snapshot()
    return {key: copy.deepcopy(getattr(snap, attr)) for key, (attr, _) in FIELDS.items()} | {
        "oidcIssuerUrl": oidc_issuer_url(hub)}
