"""Break the chain on purpose: one switch per preflight link, and the named field scenarios.

Control routes (loopback only, like ``control.py``):
``GET|PATCH /_sandbox/preflight/topology`` (the AKS-side switches of ``topology.FIELDS``),
``POST /_sandbox/preflight/break`` ``{"link": NAME}`` (flips exactly that preflight link to fail;
``rbac-freshness`` to warn), ``POST /_sandbox/preflight/scenario`` ``{"name": NAME}``.

Scenarios reproduce two field reports end to end (AZURE_FACTS.md §6):

- ``aks-identity-gap``: the cluster was created without the OIDC issuer and workload identity (Terraform's
  flags default to false), so the extension identity has no federated credentials and the Azure ML
  extension's ``identityType`` is unset; shared key is disabled on the workspace storage. Jobs on the
  Kubernetes compute fail with ``ScriptExecution.StreamAccess.Authentication``.
- ``key-datastores``: the workspace's system datastores use account keys (``systemDatastoresAuthMode``
  ``accessKey``, fixed at creation) while the storage account disallows shared key: jobs fail the same way
  however correct the RBAC is.

``slow-propagation`` is not a failure but a pace: role assignments, IP rules and their removal take effect after
the delays Azure documents or shows in the field (``SLOW_PROPAGATION``), where tests default to at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cicd_tools.sandbox.control import _body, _guard
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response
from cicd_tools.sandbox.world import topology


def _aks_identity_gap(hub: Hub) -> None:
    topology.update(hub, {"oidcIssuerEnabled": False, "workloadIdentityEnabled": False,
                          "federatedCredentials": [], "extensionIdentityType": None, "extensionIdentityId": None})
    hub.state.update_account(hub.layout.workspace_storage_account, allow_shared_key_access=False)


def _key_datastores(hub: Hub) -> None:
    topology.update(hub, {"systemDatastoresAuthMode": "accessKey"})
    hub.state.update_account(hub.layout.workspace_storage_account, allow_shared_key_access=False)


# ``slow-propagation``: field timings instead of the instant test defaults (sources in docs/sandbox.md).
# RBAC: Microsoft's "Troubleshoot Azure RBAC" says role assignment changes can take up to 10 minutes to take effect
# (30 in older versions); Storage roles are usually seen within ~5. Storage firewall: a new rule takes seconds to
# tens of seconds (~20 s: terraform-provider-azurerm#2977, azure-cli#18415) and flaps meanwhile; removals and
# defaultAction changes lag by the same order (AZURE_FACTS.md §4; no documented figure).
SLOW_PROPAGATION: dict[str, float] = {
    "delay": 20.0, "flap_window": 30.0, "removal_delay": 30.0, "default_action_delay": 20.0,
    "role_delay": 300.0, "role_removal_delay": 300.0,
}


def _slow_propagation(hub: Hub) -> None:
    hub.state.set_propagation(**SLOW_PROPAGATION)


# process.SCENARIOS names these for the CLI without importing the sandbox (a test keeps the two equal).
SCENARIOS: dict[str, Callable[[Hub], None]] = {
    "aks-identity-gap": _aks_identity_gap,
    "key-datastores": _key_datastores,
    "slow-propagation": _slow_propagation,
}


def apply_scenario(hub: Hub, name: str) -> None:
    """Apply a named scenario on top of the current state. Raises: ValueError for an unknown name."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    SCENARIOS[name](hub)


def _break_ci(hub: Hub) -> None:
    pointer_account = hub.layout.account_id(hub.layout.storage_account)
    hub.state.remove_role(hub.layout.ci_principal, "Storage Blob Data Contributor", pointer_account)


def _break_factory(hub: Hub) -> None:
    pointer_account = hub.layout.account_id(hub.layout.storage_account)
    hub.state.remove_role(hub.layout.factory_principal, "Storage Blob Data Reader", pointer_account)


def _break_storage(hub: Hub) -> None:
    hub.state.update_account(hub.layout.storage_account, public_network_access="Disabled")


def _break_compute(hub: Hub) -> None:
    # The compute is another provider's resource: a standing 404 on its GET is the switch.
    layout = hub.layout
    hub.state.add_fault(service="arm", method="GET", path=f"/workspaces/{layout.workspace}/computes/"
                        f"{layout.compute}(\\?|$)", status=404, code="ResourceNotFound",
                        message=f"Compute {layout.compute} not found in workspace {layout.workspace}.",
                        count=None)


def _break_aks(hub: Hub) -> None:
    topology.update(hub, {"extensionIdentityType": None})


def _fresh_assignment(hub: Hub) -> None:
    layout = hub.layout
    scope = layout.account_id(layout.storage_account)
    hub.state.remove_role(layout.ci_principal, "Storage Blob Data Contributor", scope)
    hub.state.assign_role(layout.ci_principal, "Storage Blob Data Contributor", scope)


BREAKS: dict[str, Callable[[Hub], None]] = {
    "ci-identity": _break_ci,
    "factory": _break_factory,
    "storage": _break_storage,
    "compute": _break_compute,
    "aks": _break_aks,
    "rbac-freshness": _fresh_assignment,
}


def break_link(hub: Hub, link: str) -> None:
    """Break one preflight link. Raises: ValueError for an unknown link."""
    if link not in BREAKS:
        raise ValueError(f"unknown link {link!r}; known: {', '.join(BREAKS)}")
    BREAKS[link](hub)


def reset(hub: Hub) -> None:
    """The provider reset hook: the healthy AKS-side topology again (role and account resets are CloudState's)."""
    topology.reset(hub)


def get_topology(req: Request, hub: Hub) -> Response:
    return json_response(200, topology.topology_json(hub))


def patch_topology(req: Request, hub: Hub) -> Response:
    topology.update(hub, _body(req))
    return json_response(200, topology.topology_json(hub))


def post_break(req: Request, hub: Hub) -> Response:
    body: dict[str, Any] = _body(req)
    break_link(hub, str(body["link"]))
    return json_response(200, {"broken": body["link"]})


def post_scenario(req: Request, hub: Hub) -> Response:
    body: dict[str, Any] = _body(req)
    apply_scenario(hub, str(body["name"]))
    return json_response(200, {"scenario": body["name"]})


routes = [
    Route(method, path, _guard(handler), "control")
    for method, path, handler in (
        ("GET", r"/_sandbox/preflight/topology", get_topology),
        ("PATCH", r"/_sandbox/preflight/topology", patch_topology),
        ("POST", r"/_sandbox/preflight/break", post_break),
        ("POST", r"/_sandbox/preflight/scenario", post_scenario),
    )
]
