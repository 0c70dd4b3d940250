"""The running sandbox: Azurite + the ARM port + blob-front origins, started and stopped together.

In-process (tests, benchmarks): ``Sandbox(root).start()`` ... ``.stop()``. As a background service
(``cicd-tools sandbox up``): ``python -m cicd_tools.sandbox.runtime --state-dir DIR`` writes
``DIR/sandbox.json`` once ready and stops everything on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import logging
import os
import secrets
import signal
import ssl
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from cicd_tools.sandbox.certs import CertBundle, make_certs
from cicd_tools.sandbox.control_client import ControlClient
from cicd_tools.sandbox.identity.identity import SECRET_ENV, SandboxCredential, new_secret, signing_key
from cicd_tools.sandbox.layout import AGENT_IP, FACTORY_PUBLIC_IP, PRIVATE_ENDPOINT_IP, SandboxLayout, account_key
from cicd_tools.sandbox.server import ArmHandler, Hub, Router, RunningServer, server_context, start_server
from cicd_tools.sandbox.state import CloudState
from cicd_tools.sandbox.storage.azurite import AzuriteProcess, start_azurite
from cicd_tools.sandbox.storage.blobfront import BlobFrontHandler, Origin
from cicd_tools.sandbox.storage.connect_proxy import STORAGE_SUFFIX, StorageProxy, start_storage_proxy
from cicd_tools.sandbox.storage.resign import delegation_key

log = logging.getLogger(__name__)

# Provider modules served on the ARM port; each exposes ``routes`` and, when it keeps state of its own,
# ``reset(hub)`` (called by ``Sandbox.reset``). Add one line per provider.
ROUTE_MODULES: tuple[str, ...] = (
    "cicd_tools.sandbox.storage.arm_storage",
    "cicd_tools.sandbox.identity.msi",
    "cicd_tools.sandbox.identity.entra",
    "cicd_tools.sandbox.identity.ci_oidc",
    "cicd_tools.sandbox.world.metadata",
    "cicd_tools.sandbox.ml.workspace",
    "cicd_tools.sandbox.ml.datastores",
    "cicd_tools.sandbox.identity.authorization",
    "cicd_tools.sandbox.identity.managed_identity",
    "cicd_tools.sandbox.aks.containerservice",
    "cicd_tools.sandbox.aks.k8s_config",
    "cicd_tools.sandbox.world.scenarios",
    "cicd_tools.sandbox.ml.compute",
    "cicd_tools.sandbox.ml.jobs",
    "cicd_tools.sandbox.ml.run_history",
    "cicd_tools.sandbox.datafactory",
    "cicd_tools.sandbox.ml.models",
    "cicd_tools.sandbox.control",
)
AGENT, PRIVATE_ENDPOINT, FACTORY_PUBLIC = "agent", "private-endpoint", "adf-public"
BUILT_IN_ORIGINS = (AGENT, PRIVATE_ENDPOINT, FACTORY_PUBLIC)
DEFAULT_PROPAGATION_DELAY = 5.0


POINTER_CONTAINER = "ml-globals"  # pre-provisioned in the private account, like the real infrastructure

class Sandbox:
    """The local cloud. Also the ``sandbox`` pytest fixture's handle."""

    def __init__(
        self,
        root: Path,
        *,
        layout: SandboxLayout | None = None,
        propagation_delay: float = DEFAULT_PROPAGATION_DELAY,
        agent_ip: str = AGENT_IP,
        arm_port: int = 0,
        secret: str | None = None,
    ) -> None:
        self.root = root
        self.layout = layout or SandboxLayout()
        self.state = CloudState(self.layout, propagation_delay=propagation_delay)
        self.agent_ip = agent_ip
        self._arm_port = arm_port
        self._identity_header = secrets.token_hex(16)
        # The per-sandbox secret: control calls carry it, tokens are signed with a key derived from it, account
        # keys derive from it. It reaches disk only in the owner-only sandbox.json (via ``env``).
        self._secret = secret or new_secret()
        self._signing_key = signing_key(self._secret)
        self._lock = threading.Lock()
        self._origins: dict[str, tuple[Origin, RunningServer]] = {}
        self._origin_numbers = itertools.count(1)
        self._reserved: set[str] = set()
        self._arm: RunningServer | None = None
        self._azurite: AzuriteProcess | None = None
        self._certs: CertBundle | None = None
        self._server_ctx: ssl.SSLContext | None = None
        self._upstream_ctx: ssl.SSLContext | None = None
        self._control: ControlClient | None = None
        self._proxy: StorageProxy | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Start Azurite, the ARM port and the agent, private-endpoint and factory origins. Raises: ConfigError."""
        if not self.root.exists():
            self.root.mkdir(parents=True, mode=0o700)  # data, certs and job folders: the owner's only
        # The blob front also answers host-style names through the storage proxy (storage/connect_proxy.py).
        self._certs = make_certs(self.root / "certs", ("localhost", f"*.blob.{STORAGE_SUFFIX}"))
        accounts = {name: self.account_key(name) for name in self.state.account_names()}
        # Azurite takes shared key and SAS only, with keys of this sandbox (storage/azurite.py): the blob front
        # checks tokens and signs what it admits with the account key.
        self._azurite = start_azurite(self.root / "azurite", self._certs, accounts=accounts,
                                      delegation_key=delegation_key(self._secret))
        try:
            self._server_ctx = server_context(str(self._certs.server_cert), str(self._certs.server_key))
            self._upstream_ctx = ssl.create_default_context(cafile=str(self._certs.ca_cert))
            router = Router()
            for name in ROUTE_MODULES:
                router.include(importlib.import_module(name).routes)
            hub: Hub = self  # mypy checks here that the Sandbox offers what handlers expect
            self._arm = start_server(ArmHandler, self._server_ctx, port=self._arm_port, hub=hub, router=router)
            self._start_origin(AGENT, self.agent_ip, private_endpoint=False)
            self._start_origin(PRIVATE_ENDPOINT, PRIVATE_ENDPOINT_IP, private_endpoint=True)
            # The Data Factory's public egress: where its activities leave without an approved private endpoint.
            self._start_origin(FACTORY_PUBLIC, FACTORY_PUBLIC_IP, private_endpoint=False)
            self._provision_blobs()
            self._proxy = start_storage_proxy(self._proxy_target)
        except BaseException:
            self.stop()
            raise
        log.info("sandbox ready: ARM %s, blob %s", self.arm_endpoint, self.blob_endpoint)
        return self

    def stop(self) -> None:
        """Stop every server and Azurite; safe to call twice."""
        with self._lock:
            origins, self._origins = list(self._origins.values()), {}
        for _, server in origins:
            server.stop()
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self._arm is not None:
            self._arm.stop()
            self._arm = None
        if self._azurite is not None:
            self._azurite.stop()
            self._azurite = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_origin(self, name: str, ip: str, *, private_endpoint: bool) -> Origin:
        assert self._server_ctx is not None and self._azurite is not None
        server = start_server(BlobFrontHandler, self._server_ctx, hub=self, upstream_port=self._azurite.port,
                              upstream_context=self._upstream_ctx)
        origin = Origin(name, ip, private_endpoint, server.port)
        server.server.origin = origin  # type: ignore[attr-defined]
        with self._lock:
            self._origins[name] = (origin, server)
        return origin

    def _proxy_target(self, account: str) -> int | None:
        """The agent origin's blob front port for an account the sandbox holds (the storage proxy's DNS)."""
        if not self.state.has_account(account):
            return None
        return self.origin(AGENT).port

    @property
    def storage_proxy(self) -> str:
        """``HTTPS_PROXY`` for clients that build ``https://{account}.blob.{suffix}`` themselves (azure-ai-ml's
        datastore transfers); set ``NO_PROXY=127.0.0.1`` with it."""
        if self._proxy is None:
            raise RuntimeError("the sandbox is not running")
        return self._proxy.url

    # -- the Hub protocol (what route handlers use) ----------------------------------------------------
    @property
    def arm_endpoint(self) -> str:
        if self._arm is None:
            raise RuntimeError("the sandbox is not running")
        return f"https://127.0.0.1:{self._arm.port}"

    @property
    def identity_header(self) -> str:
        return self._identity_header

    @property
    def secret(self) -> str:
        """The per-sandbox secret (``CICD_SANDBOX_SECRET``): control calls need it."""
        return self._secret

    @property
    def state_dir(self) -> Path:
        """The sandbox's state folder (certificates, Azurite data, job folders)."""
        return self.root

    @property
    def signing_key(self) -> bytes:
        """The key the sandbox signs (and checks) its tokens with."""
        return self._signing_key

    def credential(self, principal: str = "ci-pipeline") -> SandboxCredential:
        """A TokenCredential minting tokens this sandbox accepts, for ``principal``."""
        return SandboxCredential(principal, secret=self._secret)

    def origin(self, name: str = AGENT) -> Origin:
        """A running origin by name. Raises: KeyError."""
        with self._lock:
            return self._origins[name][0]

    def blob_endpoint_of(self, account: str, origin: str = AGENT) -> str:
        return self.origin(origin).blob_endpoint(account)

    def account_key(self, account: str) -> str:
        return account_key(account, self._secret)

    def origins_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [o.to_json() for o, _ in self._origins.values()]

    def add_origin(self, ip: str, name: str | None = None) -> dict[str, Any]:
        """Start another public origin with source ``ip``. Raises: ValueError for a bad or taken name."""
        import ipaddress

        ipaddress.ip_address(ip)
        with self._lock:
            name = name or f"origin-{next(self._origin_numbers)}"
            if name in self._origins or name in self._reserved:
                raise ValueError(f"origin {name!r} exists")
            self._reserved.add(name)  # concurrent callers cannot take the same name while it starts
        try:
            origin = self._start_origin(name, ip, private_endpoint=False)
        finally:
            with self._lock:
                self._reserved.discard(name)
        data = origin.to_json()
        data["blobEndpoint"] = origin.blob_endpoint(self.layout.storage_account)
        return data

    def reset(self) -> None:
        """Back to the pre-provisioned state: extra origins stopped, every container but the pointer one deleted."""
        self.state.reset()
        # Providers that keep their own state beside the hub expose ``reset(hub)``.
        for name in ROUTE_MODULES:
            provider_reset = getattr(importlib.import_module(name), "reset", None)
            if provider_reset is not None:
                provider_reset(self)
        with self._lock:
            extra = [(n, s) for n, (_, s) in self._origins.items() if n not in BUILT_IN_ORIGINS]
            for name, _ in extra:
                del self._origins[name]
        for _, server in extra:
            server.stop()
        self._wipe_blobs()

    def _direct_service(self, name: str) -> Any:
        """A client straight to Azurite with the account key: no firewall, no RBAC in the way."""
        from azure.storage.blob import BlobServiceClient

        assert self._azurite is not None and self._certs is not None
        return BlobServiceClient(
            f"https://127.0.0.1:{self._azurite.port}/{name}", connection_verify=str(self._certs.ca_cert),
            credential={"account_name": name, "account_key": self.account_key(name)},
        )

    def _wipe_blobs(self) -> None:
        if self._azurite is None or self._certs is None:
            return
        for name in self.state.account_names():
            with self._direct_service(name) as service:
                for container in service.list_containers():
                    service.delete_container(container.name)
        self._provision_blobs()

    def _provision_blobs(self) -> None:
        """The pointer container exists, as the infrastructure that owns the account would create it."""
        from azure.core.exceptions import ResourceExistsError

        with self._direct_service(self.layout.storage_account) as service, contextlib.suppress(ResourceExistsError):
            service.create_container(POINTER_CONTAINER)

    def info(self) -> dict[str, Any]:
        return {
            "armEndpoint": self.arm_endpoint,
            "controlUrl": self.control_url,
            "caBundle": str(self.ca_bundle),
            "azuritePort": self._azurite.port if self._azurite else None,
            "azuritePid": self._azurite.process.pid if self._azurite else None,
            "origins": self.origins_json(),
            "storageProxy": self._proxy.url if self._proxy else None,
            "layout": {k: getattr(self.layout, k) for k in self.layout.__dataclass_fields__},
        }

    # -- the fixture handle ----------------------------------------------------------------------------
    @property
    def ca_bundle(self) -> Path:
        if self._certs is None:
            raise RuntimeError("the sandbox is not running")
        return self._certs.ca_cert

    @property
    def subscription_id(self) -> str:
        return self.layout.subscription_id

    @property
    def resource_group(self) -> str:
        return self.layout.resource_group

    @property
    def storage_account(self) -> str:
        return self.layout.storage_account

    @property
    def blob_endpoint(self) -> str:
        """The storage account's blob endpoint through the agent origin (what CI uses)."""
        return self.blob_endpoint_of(self.layout.storage_account)

    @property
    def private_blob_endpoint(self) -> str:
        return self.blob_endpoint_of(self.layout.storage_account, PRIVATE_ENDPOINT)

    @property
    def echo_urls(self) -> tuple[str, str]:
        return self.origin(AGENT).echo_urls

    @property
    def identity_endpoint(self) -> str:
        """The App Service MSI endpoint of the CI identity."""
        return self.identity_endpoint_for(self.layout.ci_principal)

    def identity_endpoint_for(self, principal: str) -> str:
        return f"{self.arm_endpoint}/identity/{principal}"

    @property
    def control_url(self) -> str:
        return f"{self.arm_endpoint}/_sandbox"

    @property
    def control(self) -> ControlClient:
        if self._control is None:
            self._control = ControlClient(self.control_url, self.ca_bundle, secret=self._secret)
        return self._control

    @property
    def azurite_pid(self) -> int | None:
        return self._azurite.process.pid if self._azurite else None

    def env(self, state_dir: Path | None = None) -> dict[str, str]:
        """The variables ``cicd-tools sandbox env`` prints: every command works with them and no flags."""
        layout = self.layout
        return {
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "CICD_SUBSCRIPTION_ID": layout.subscription_id,
            "CICD_RESOURCE_GROUP": layout.resource_group,
            "CICD_STORAGE_ACCOUNT": layout.storage_account,
            "CICD_WORKSPACE": layout.workspace,
            "CICD_FACTORY": layout.factory,
            "CICD_COMPUTE": layout.compute,
            "CICD_AKS_CLUSTER": layout.aks_cluster,
            "CICD_ARM_ENDPOINT": self.arm_endpoint,
            "CICD_BLOB_ENDPOINT": self.blob_endpoint,
            "CICD_IP_ECHO_URLS": ",".join(self.echo_urls),
            "CICD_SANDBOX_STATE_DIR": str((state_dir or self.root).resolve()),
            "CICD_SANDBOX_CONTROL_URL": self.control_url,
            "CICD_SANDBOX_STORAGE_PROXY": self.storage_proxy,
            SECRET_ENV: self._secret,
        }


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGTERM/SIGINT (the ``sandbox up`` background process)."""
    from cicd_tools.sandbox import process

    parser = argparse.ArgumentParser(prog="python -m cicd_tools.sandbox.runtime")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--propagation-delay", type=float, default=DEFAULT_PROPAGATION_DELAY)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cicd_tools.support.redact import RedactingFilter, register_secret

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())  # sandbox.log never shows the secret, the signing key or a token
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    state_dir: Path = args.state_dir.resolve()
    sandbox = Sandbox(state_dir, propagation_delay=args.propagation_delay)
    register_secret(sandbox.secret)
    register_secret(sandbox.identity_header)
    register_secret(sandbox.signing_key.hex())
    for name in sandbox.state.account_names():  # Azurite's keys: sandbox.log never shows them either
        register_secret(sandbox.account_key(name))
    register_secret(delegation_key(sandbox.secret))
    try:
        sandbox.start()
        process.write_info(state_dir, sandbox, pid=os.getpid())
        while not stop.wait(1.0):
            if sandbox._azurite is None or sandbox._azurite.process.poll() is not None:
                log.error("Azurite exited; stopping the sandbox")
                return 1
        return 0
    finally:
        sandbox.stop()
        process.remove_info(state_dir, pid=os.getpid())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
