"""Where a WebActivity run by the sandbox's Data Factory leaves from, which names it resolves, whose token it sends.

As in Azure (AZURE_FACTS.md §5):

* ``typeProperties.connectVia`` naming a *managed* integration runtime (one in a managed virtual network)
  reaches a storage account through the blob front's **private-endpoint** origin, but only when the factory
  has an **Approved** managed private endpoint to that account's ``blob`` sub-resource. A Pending or
  Rejected endpoint, or none, leaves the call on the managed network's public egress: the **Data Factory
  public IP** origin, which the account's firewall refuses (403 ``AuthorizationFailure``).
* No ``connectVia`` (or one at the activity root, which ADF ignores and so does the runner) means the
  default Azure IR: the Data Factory public IP origin.
* DNS: ``{account}.blob.core.windows.net`` of a sandbox account resolves to the chosen origin's port,
  ``management.azure.com`` to the sandbox's ARM port; loopback URLs stay as they are; any other name does
  not resolve (the sandbox never reaches the internet).
* MSI authentication gets a token for the factory's own principal (``adf-factory``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cicd_tools.adf.web import DEFAULT_RUNTIME, Origin
from cicd_tools.sandbox.datafactory.store import MPE_KIND, FactoryState, df_state
from cicd_tools.sandbox.identity.identity import mint_token
from cicd_tools.sandbox.server import Hub

PRIVATE_ENDPOINT = "private-endpoint"  # the blob front origins started by sandbox/runtime.py
FACTORY_PUBLIC = "adf-public"
BLOB_SUFFIX = ".blob.core.windows.net"
ARM_HOST = "management.azure.com"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class FactoryTokens:
    """The factory's managed identity: sandbox tokens for its principal."""

    def __init__(self, principal: str, key: bytes) -> None:
        self.principal = principal
        self._key = key

    def get_token(self, resource: str) -> str:
        return mint_token(self.principal, resource, key=self._key)


class FactoryNetwork:
    """``NetworkOrigins`` for one factory: picks the origin per integration runtime, resolves host names."""

    def __init__(self, hub: Hub, factory: FactoryState) -> None:
        self.hub = hub
        self.factory = factory
        self.ca_bundle = str(hub.info().get("caBundle") or "") or None

    def origin_for(self, runtime: str | None) -> Origin:
        """Raises: LookupError for a runtime the published factory does not have."""
        if runtime is None or runtime == DEFAULT_RUNTIME:
            return self._origin(DEFAULT_RUNTIME, "West Europe", lambda account: FACTORY_PUBLIC)
        with df_state(self.hub).lock:
            body = self.factory.resources.get(("integrationruntimes", runtime.lower()))
            endpoints = [dict(v["properties"]) for (k, _), v in self.factory.resources.items() if k == MPE_KIND]
        if body is None:
            raise LookupError(
                f"The integration runtime '{runtime}' referenced by connectVia does not exist in factory "
                f"'{self.factory.name}'."
            )
        props: Mapping[str, Any] = body.get("properties") or {}
        managed = props.get("type") == "Managed" and isinstance(props.get("managedVirtualNetwork"), Mapping)
        if not managed:
            return self._origin(runtime, "West Europe", lambda account: FACTORY_PUBLIC)

        def via_endpoint(account: str) -> str:
            wanted = self.hub.layout.account_id(account).lower()
            for mpe in endpoints:
                state = (mpe.get("connectionState") or {}).get("status")
                if (str(mpe.get("privateLinkResourceId", "")).lower() == wanted
                        and str(mpe.get("groupId", "")).lower() == "blob" and state == "Approved"):
                    return PRIVATE_ENDPOINT
            return FACTORY_PUBLIC  # no approved endpoint: the managed network's public egress

        return self._origin(runtime, "West Europe", via_endpoint)

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
