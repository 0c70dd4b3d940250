"""Where a WebActivity run by the sandbox's Data Factory leaves from, which names it resolves, whose token it sends.

As in Azure (AZURE_FACTS.md §5, §9; docs/sandbox.md "Data Factory network verdicts"):

* The activity's integration runtime is ``typeProperties.connectVia`` (one at the activity root is ignored, by
  ADF and the runner), else the factory's ``AutoResolveIntegrationRuntime``. Either is looked up among the
  factory's published runtimes; the AutoResolve one, when the factory does not define it, is the plain public
  Azure IR every factory has.
* A runtime *in the managed virtual network* (``type: Managed`` with a ``managedVirtualNetwork`` reference; a
  factory created with a managed VNet has its AutoResolve runtime so) reaches a storage account through the blob
  front's **private-endpoint** origin, but only when the factory has an **Approved** managed private endpoint to
  that account's ``blob`` sub-resource. A Pending or Rejected endpoint, or none, leaves the call on the managed
  network's public egress: the **Data Factory public IP** origin, which the account's firewall refuses (403
  ``AuthorizationFailure``) unless the trusted-services exception admits it (``storage.trusted``: off by default).
* Any other runtime (a public Azure IR) leaves from the Data Factory public IP origin.
* ``effectiveIntegrationRuntime`` is ``"{runtime} ({region})"`` as in the service's activity output (spec example
  ActivityRuns_QueryByPipelineRun.json: ``"DefaultIntegrationRuntime (East US)"``): the runtime's
  ``computeProperties.location``, or for ``AutoResolve`` the factory's region (concepts-integration-runtime,
  "Azure IR location": pipeline and external activities use the IR in the data factory region).
* DNS: ``{account}.blob.core.windows.net`` of a sandbox account resolves to the chosen origin's port,
  ``management.azure.com`` to the sandbox's ARM port; loopback URLs stay as they are; any other name does
  not resolve (the sandbox never reaches the internet).
* MSI authentication gets a token for the factory's own system-assigned identity (``adf-factory``), naming the
  factory in ``xms_mirid`` as managed identity tokens do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cicd_tools.adf.web import DEFAULT_RUNTIME, Origin
from cicd_tools.sandbox.datafactory.store import MPE_KIND, FactoryState, df_state
from cicd_tools.sandbox.identity.identity import decode_token, mint_token, sign_claims
from cicd_tools.sandbox.server import Hub

PRIVATE_ENDPOINT = "private-endpoint"  # the blob front origins started by sandbox/runtime.py
FACTORY_PUBLIC = "adf-public"
BLOB_SUFFIX = ".blob.core.windows.net"
ARM_HOST = "management.azure.com"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# Region names as the service writes them in effectiveIntegrationRuntime; other names are shown as given.
REGION_NAMES = {
    "westeurope": "West Europe", "northeurope": "North Europe", "eastus": "East US", "eastus2": "East US 2",
    "westus": "West US", "westus2": "West US 2", "westus3": "West US 3", "centralus": "Central US",
    "uksouth": "UK South", "swedencentral": "Sweden Central", "germanywestcentral": "Germany West Central",
    "francecentral": "France Central", "switzerlandnorth": "Switzerland North", "norwayeast": "Norway East",
}


def region_name(location: str) -> str:
    """``West Europe`` for ``westeurope`` (an already spelled-out name stays as it is)."""
    return REGION_NAMES.get(location.replace(" ", "").lower(), location)


class FactoryTokens:
    """The factory's system-assigned managed identity: sandbox tokens for its principal."""

    def __init__(self, principal: str, key: bytes, resource_id: str | None = None) -> None:
        self.principal = principal
        self.resource_id = resource_id  # the factory: managed identity tokens name it in xms_mirid
        self._key = key

    def get_token(self, resource: str) -> str:
        token = mint_token(self.principal, resource, key=self._key)
        if self.resource_id is None:
            return token
        return sign_claims({**decode_token(token), "xms_mirid": self.resource_id}, self._key)


def in_managed_vnet(props: Mapping[str, Any]) -> bool:
    """An integration runtime in the factory's managed virtual network (an Azure IR with that reference)."""
    vnet = props.get("managedVirtualNetwork")
    return props.get("type") == "Managed" and isinstance(vnet, Mapping) and bool(vnet.get("referenceName"))


class FactoryNetwork:
    """``NetworkOrigins`` for one factory: picks the origin per integration runtime, resolves host names."""

    def __init__(self, hub: Hub, factory: FactoryState) -> None:
        self.hub = hub
        self.factory = factory
        self.ca_bundle = str(hub.info().get("caBundle") or "") or None

    def origin_for(self, runtime: str | None) -> Origin:
        """Raises: LookupError for a runtime the published factory does not have."""
        name = runtime or DEFAULT_RUNTIME
        with df_state(self.hub).lock:
            body = self.factory.resources.get(("integrationruntimes", name.lower()))
            endpoints = [dict(v["properties"]) for (k, _), v in self.factory.resources.items() if k == MPE_KIND]
        if body is None and name.lower() != DEFAULT_RUNTIME.lower():
            raise LookupError(
                f"The integration runtime '{runtime}' referenced by connectVia does not exist in factory "
                f"'{self.factory.name}'."
            )
        props: Mapping[str, Any] = (body or {}).get("properties") or {}
        shown = str((body or {}).get("name") or name)
        region = self._region(props)
        if not in_managed_vnet(props):
            return self._origin(shown, region, lambda account: FACTORY_PUBLIC)

        def via_endpoint(account: str) -> str:
            wanted = self.hub.layout.account_id(account).lower()
            for mpe in endpoints:
                state = (mpe.get("connectionState") or {}).get("status")
                if (str(mpe.get("privateLinkResourceId", "")).lower() == wanted
                        and str(mpe.get("groupId", "")).lower() == "blob" and state == "Approved"):
                    return PRIVATE_ENDPOINT
            return FACTORY_PUBLIC  # no approved endpoint: the managed network's public egress

        return self._origin(shown, region, via_endpoint)

    def _region(self, props: Mapping[str, Any]) -> str:
        """The runtime's compute location; AutoResolve (or none) runs in the factory's region."""
        tp = props.get("typeProperties")
        compute = tp.get("computeProperties") if isinstance(tp, Mapping) else None
        location = compute.get("location") if isinstance(compute, Mapping) else None
        if not isinstance(location, str) or not location or location.lower() == "autoresolve":
            location = self.factory.location
        return region_name(location)

    def _origin(self, name: str, region: str, origin_of: Callable[[str], str]) -> Origin:
        return Origin(name=name, region=region, resolve=lambda url: self.resolve(url, origin_of),
                      ca_bundle=self.ca_bundle)

    def resolve(self, url: str, origin_of: Callable[[str], str]) -> str:
        """The sandbox address of ``url``. Raises: LookupError when the host name does not resolve."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in LOOPBACK:
            return url
        if host == ARM_HOST:
            return self._rebase(parts, self.hub.arm_endpoint)
        if host.endswith(BLOB_SUFFIX):
            account = host[: -len(BLOB_SUFFIX)]
            if not self.hub.state.has_account(account):
                raise LookupError(f"The remote name could not be resolved: '{host}'")
            return self._rebase(parts, self.hub.blob_endpoint_of(account, origin_of(account)))
        raise LookupError(
            f"The remote name could not be resolved: '{host}' (the sandbox resolves only its own resources'"
            f" Azure host names: *{BLOB_SUFFIX}, {ARM_HOST}, and loopback)"
        )

    @staticmethod
    def _rebase(parts: Any, base: str) -> str:
        target = urlsplit(base)
        return str(urlunsplit((target.scheme, target.netloc, target.path.rstrip("/") + parts.path, parts.query, "")))
