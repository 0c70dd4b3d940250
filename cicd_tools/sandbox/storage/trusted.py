"""Storage's trusted-services exception (``networkAcls.bypass: AzureServices``) as the blob front applies it.

Microsoft's list "Trusted access based on a managed identity" (storage-network-security-trusted-azure-services)
names ``Microsoft.DataFactory/factories``: "Enables access to storage accounts through the Data Factory runtime",
for resource instances in the account's tenant whose managed identity holds a role; the trusted bypass uses the
**system-assigned** identity only (data-factory-service-identity: "Trusted bypass cannot utilize user-assigned
managed identities"). A managed identity's token names its resource in ``xms_mirid``.

What the documentation does not say is whether a *WebActivity's* MSI call over the public path counts as "the Data
Factory runtime" (it documents Copy and Mapping Data Flows). The field report the sandbox was seeded with (403
until ``connectVia`` moved inside ``typeProperties``) stays the default: the exception does **not** admit it. A
sandbox switch (``ControlClient.set_factory_trusted_bypass(True)``) makes the other reading testable. Docs:
docs/sandbox.md, "Data Factory network verdicts".
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT
from cicd_tools.sandbox.server import Hub

DATA_FACTORY = "microsoft.datafactory/factories"
# Resource types of the managed-identity table the sandbox has instances of; each is admitted only when switched on.
TRUSTED_BY_IDENTITY = frozenset({DATA_FACTORY})

_ADMITTED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def set_admitted(hub: Hub, resource_type: str, admitted: bool) -> None:
    """Switch whether the trusted-services exception admits ``resource_type``'s instances. Raises: ValueError."""
    kind = resource_type.lower()
    if kind not in TRUSTED_BY_IDENTITY:
        raise ValueError(f"{resource_type} is not on the trusted-services list the sandbox models")
    with _LOCK:
        switched = _ADMITTED.setdefault(hub.state, set())
        if admitted:
            switched.add(kind)
        else:
            switched.discard(kind)


def is_admitted(hub: Hub, resource_type: str) -> bool:
    with _LOCK:
        return resource_type.lower() in _ADMITTED.get(hub.state, set())


def resource_type_of(resource_id: str) -> str | None:
    """``microsoft.datafactory/factories`` of ``/subscriptions/…/providers/Microsoft.DataFactory/factories/f``."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if "providers" not in lowered:
        return None
    at = len(lowered) - 1 - lowered[::-1].index("providers")
    tail = parts[at + 1:]
    if len(tail) < 3:
        return None
    return f"{tail[0]}/{tail[1]}".lower()


def bypass_admits(hub: Hub, account: str, claims: Mapping[str, Any]) -> bool:
    """Whether ``bypass: AzureServices`` lets a verified token's caller past the account's network rules.

    Needs: the account's public network access Enabled (the exception relaxes network rules, it is not a private
    endpoint), ``AzureServices`` in ``bypass``, a system-assigned managed identity (``xms_mirid`` names the
    resource itself) of the account's tenant, of a trusted resource type that is switched on.
    """
    acc = hub.state.account(account)
    if acc.public_network_access != "Enabled":
        return False
    bypass = acc.network_acls.get("bypass")
    if not isinstance(bypass, str) or "azureservices" not in [p.strip().lower() for p in bypass.split(",")]:
        return False
    mirid = claims.get("xms_mirid")
    if not isinstance(mirid, str) or claims.get("tid") != SANDBOX_TENANT:
        return False
    kind = resource_type_of(mirid)
    if kind is None or "/userassignedidentities/" in mirid.lower():
        return False
    return kind in TRUSTED_BY_IDENTITY and is_admitted(hub, kind)
