"""Storage's trusted-services exception as the sandbox applies it (cicd_tools/sandbox/storage/trusted.py).

Sources: storage-network-security-trusted-azure-services ("Trusted access based on a managed identity" lists
Microsoft.DataFactory/factories); data-factory-service-identity ("Trusted bypass cannot utilize user-assigned
managed identities"). Whether it admits a WebActivity is undocumented: off unless switched on (docs/sandbox.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT
from cicd_tools.sandbox.storage.trusted import DATA_FACTORY, bypass_admits, resource_type_of, set_admitted

FACTORY = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataFactory/factories/adf-sandbox"
UAMI = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x"


@dataclass
class _Account:
    network_acls: dict[str, Any] = field(default_factory=lambda: {"defaultAction": "Deny", "bypass": "AzureServices"})
    public_network_access: str = "Enabled"


class _State:
    def __init__(self) -> None:
        self.acc = _Account()

    def account(self, name: str) -> _Account:
        return self.acc


class _Hub:
    def __init__(self) -> None:
        self.state = _State()


def claims(mirid: str = FACTORY, tenant: str = SANDBOX_TENANT) -> dict[str, Any]:
    return {"xms_mirid": mirid, "tid": tenant}


@pytest.fixture()
def hub() -> Any:
    return _Hub()


def test_resource_type_of_reads_provider_and_type() -> None:
    assert resource_type_of(FACTORY) == "microsoft.datafactory/factories"
    assert resource_type_of("/subscriptions/s/resourceGroups/rg") is None


def test_the_factory_is_not_admitted_by_default(hub: Any) -> None:
    assert bypass_admits(hub, "acc", claims()) is False


def test_switched_on_the_factorys_system_identity_is_admitted(hub: Any) -> None:
    set_admitted(hub, DATA_FACTORY, True)
    assert bypass_admits(hub, "acc", claims()) is True


@pytest.mark.parametrize(("change", "token"), [
    ({"bypass": "None"}, claims()),
    ({"bypass": "Logging, Metrics"}, claims()),
    ({}, claims(mirid=UAMI)),  # user-assigned: "Trusted bypass cannot utilize user-assigned managed identities"
    ({}, claims(tenant="00000000-0000-0000-0000-000000000000")),  # another tenant's factory
    ({}, {"tid": SANDBOX_TENANT}),  # not a managed identity token
])
def test_switched_on_the_exception_still_needs_its_conditions(hub: Any, change: dict[str, Any],
                                                             token: dict[str, Any]) -> None:
    set_admitted(hub, DATA_FACTORY, True)
    hub.state.acc.network_acls.update(change)
    assert bypass_admits(hub, "acc", token) is False


def test_public_network_access_disabled_is_not_relaxed_by_the_exception(hub: Any) -> None:
    set_admitted(hub, DATA_FACTORY, True)
    hub.state.acc.public_network_access = "Disabled"
    assert bypass_admits(hub, "acc", claims()) is False
