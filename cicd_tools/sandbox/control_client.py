"""A typed client of the sandbox control endpoint, for tests, benchmarks and the demo.

Every call carries the sandbox's secret (``X-Cicd-Sandbox-Secret``): given, or ``CICD_SANDBOX_SECRET`` from the
environment (what ``cicd-tools sandbox env`` exports). Without it the sandbox answers 401.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cicd_tools.support.errors import UsageError


class ControlError(UsageError):
    """The sandbox control endpoint refused a request or could not be reached."""

    default_hint = "Is the sandbox running? `cicd-tools sandbox status`."


@dataclass(frozen=True)
class OriginInfo:
    """A blob-front origin: where its traffic appears to come from."""

    name: str
    ip: str
    private_endpoint: bool
    base_url: str
    echo_urls: tuple[str, ...]

    def blob_endpoint(self, account: str) -> str:
        return f"{self.base_url}/{account}"


@dataclass(frozen=True)
class FaultInfo:
    """An armed (or spent) fault and how often it fired."""

    id: str
    service: str
    path: str
    method: str | None
    kind: str
    status: int
    hits: int
    remaining: int | None


class ControlClient:
    """``/_sandbox`` over HTTPS; every call raises ControlError on a non-2xx answer."""

    def __init__(
        self, base_url: str, ca_bundle: str | Path, *, secret: str | None = None, timeout: float = 10.0
    ) -> None:
        import requests

        from cicd_tools.sandbox.identity.identity import SECRET_ENV
        from cicd_tools.sandbox.server import SECRET_HEADER

        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        given = secret or os.environ.get(SECRET_ENV)
        if given:
            from cicd_tools.support.redact import register_secret

            register_secret(given)
            self._session.headers[SECRET_HEADER] = given
        self._session.trust_env = False  # loopback only: never through a proxy from the environment
        self._session.verify = str(ca_bundle)
        self._timeout = timeout

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: str) -> Any:
        import requests

        url = f"{self.base_url}{path}"
        try:
            response = self._session.request(method, url, json=body, params=params or None, timeout=self._timeout)
        except requests.RequestException as err:
            raise ControlError(f"sandbox control endpoint unreachable at {url}: {err}") from None
        if response.status_code >= 400:
            raise ControlError(f"sandbox control {method} {path} failed: {response.status_code} {response.text}")
        return response.json()

    # -- state ---------------------------------------------------------------------------------------
    def health(self) -> bool:
        try:
            return bool(self._call("GET", "/health").get("status") == "ok")
        except ControlError:
            return False

    def info(self) -> dict[str, Any]:
        return dict(self._call("GET", "/info"))

    def reset(self) -> None:
        """Pre-provisioned accounts, roles and delay back; faults, extra origins and the request log gone."""
        self._call("POST", "/reset")

    def propagation_delay(self) -> float:
        return float(self._call("GET", "/propagation-delay")["seconds"])

    def set_propagation_delay(self, seconds: float) -> None:
        self._call("PUT", "/propagation-delay", {"seconds": seconds})

    def propagation(self) -> dict[str, Any]:
        return dict(self._call("GET", "/storage/propagation"))

    def set_propagation(
        self,
        *,
        delay: float | None = None,
        flap_window: float | None = None,
        flap_refuse_ratio: float | None = None,
        removal_delay: float | None = None,
        default_action_delay: float | None = None,
        seed: int | None = None,
        role_delay: float | None = None,
        role_removal_delay: float | None = None,
    ) -> dict[str, Any]:
        """Storage firewall propagation: a new rule refuses for ``delay`` s, then admits or refuses at random
        (ratio ``flap_refuse_ratio``) for ``flap_window`` s; removals and defaultAction changes lag. RBAC: a new
        role assignment grants after ``role_delay`` s, a removed one keeps granting ``role_removal_delay`` s."""
        given = {"delay": delay, "flapWindow": flap_window, "flapRefuseRatio": flap_refuse_ratio,
                 "removalDelay": removal_delay, "defaultActionDelay": default_action_delay, "seed": seed,
                 "roleDelay": role_delay, "roleRemovalDelay": role_removal_delay}
        return dict(self._call("PUT", "/storage/propagation", {k: v for k, v in given.items() if v is not None}))

    def refuse_resource_access_types(self, types: list[str]) -> list[str]:
        """Make the Storage RP refuse carried-back resourceAccessRules of these types (400, as in the field)."""
        return list(self._call("PUT", "/storage/rp", {"refuseResourceTypes": types})["refuseResourceTypes"])

    # -- origins -------------------------------------------------------------------------------------
    def origins(self) -> list[OriginInfo]:
        return [self._origin(o) for o in self._call("GET", "/origins")["value"]]

    def add_origin(self, ip: str, *, name: str | None = None, account: str | None = None) -> str:
        """Start a public origin with source ``ip``; returns its blob endpoint for ``account``."""
        data = self._call("POST", "/origins", {"ip": ip, "name": name})
        origin = self._origin(data)
        return origin.blob_endpoint(account) if account else str(data["blobEndpoint"])

    @staticmethod
    def _origin(data: dict[str, Any]) -> OriginInfo:
        return OriginInfo(data["name"], data["ip"], bool(data["privateEndpoint"]), data["baseUrl"],
                          tuple(data.get("echoUrls") or ()))

    # -- roles ---------------------------------------------------------------------------------------
    def role_assignments(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/role-assignments")["value"])

    def assign_role(
        self, principal: str, role: str, scope: str | None = None, *, created_on: str | None = None
    ) -> None:
        """Assign ``role`` to ``principal`` (a name such as ``ci-pipeline``, or an object id).

        ``scope`` defaults to the sandbox storage account; ``created_on`` (ISO 8601) to now.
        """
        self._call("POST", "/role-assignments", {"principal": principal, "role": role, "scope": scope,
                                                 "createdOn": created_on})

    def remove_role(self, principal: str, role: str, scope: str | None = None) -> int:
        """Remove the assignments of ``role`` (at every scope when ``scope`` is None); returns how many."""
        data = self._call("DELETE", "/role-assignments", {"principal": principal, "role": role, "scope": scope})
        return int(data["removed"])

    # -- faults --------------------------------------------------------------------------------------
    def add_fault(
        self,
        *,
        service: str = "blob",
        path: str = ".*",
        method: str | None = None,
        kind: str = "status",
        status: int = 503,
        retry_after: float | None = None,
        code: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
        count: int | None = 1,
    ) -> FaultInfo:
        """Arm a fault on requests of ``service`` (arm|blob|identity|echo|*) whose target matches ``path``.

        ``kind``: ``status`` (answer ``status`` with Azure's error body and Retry-After), ``drop``
        (close the connection without an answer) or ``delay`` (wait ``delay`` s, then answer normally).
        ``count`` matching requests are affected, then the fault disarms (None: until cleared).
        """
        body = {"service": service, "path": path, "method": method, "kind": kind, "status": status,
                "retry_after": retry_after, "code": code, "message": message, "delay": delay, "count": count}
        return self._fault(self._call("POST", "/faults", body))

    def faults(self) -> list[FaultInfo]:
        return [self._fault(f) for f in self._call("GET", "/faults")["value"]]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    @staticmethod
    def _fault(data: dict[str, Any]) -> FaultInfo:
        return FaultInfo(data["id"], data["service"], data["path"], data.get("method"), data["kind"],
                         int(data["status"]), int(data["hits"]), data.get("remaining"))

    # -- accounts ------------------------------------------------------------------------------------
    def account(self, name: str | None = None) -> dict[str, Any]:
        """The account as ARM shows it, plus ``sandbox`` (rule ages, delay, account key)."""
        return dict(self._call("GET", f"/accounts/{name or self._default_account()}"))

    def set_account_properties(
        self,
        name: str | None = None,
        *,
        network_acls: dict[str, Any] | None = None,
        public_network_access: str | None = None,
        allow_shared_key_access: bool | None = None,
        tags: dict[str, str] | None = None,
        propagated: bool = True,
    ) -> dict[str, Any]:
        """Preset account properties without ARM (``propagated``: new IP rules are in effect at once)."""
        body: dict[str, Any] = {"propagated": propagated}
        if network_acls is not None:
            body["networkAcls"] = network_acls
        if public_network_access is not None:
            body["publicNetworkAccess"] = public_network_access
        if allow_shared_key_access is not None:
            body["allowSharedKeyAccess"] = allow_shared_key_access
        if tags is not None:
            body["tags"] = tags
        return dict(self._call("PATCH", f"/accounts/{name or self._default_account()}", body))

    def _default_account(self) -> str:
        return str(self.info()["layout"]["storage_account"])

    # -- Azure ML ------------------------------------------------------------------------------------
    def code_hash_scope(self) -> str:
        """What the code-version hash lookup matches: ``workspace`` (any name, the default) or ``name``."""
        return str(self._call("GET", "/machinelearning/code-hash-scope")["scope"])

    def set_code_hash_scope(self, scope: str) -> None:
        """``workspace``: the hash filter matches regardless of name, as the REST spec documents (default);
        ``name``: only versions of the name in the URL (the behaviour an earlier stub assumed). Reset restores
        ``workspace``."""
        self._call("PUT", "/machinelearning/code-hash-scope", {"scope": scope})
    # -- Azure ML jobs -------------------------------------------------------------------------------
    def aml_job(self, name: str) -> dict[str, Any]:
        """A sandbox Azure ML job's status, error and whole log (what its std_log.txt holds)."""
        return dict(self._call("GET", f"/aml/jobs/{name}"))

    def aml_job_timing(self) -> dict[str, float]:
        """Seconds a job dwells in Queued, Preparing, Running (at least), Finalizing and CancelRequested."""
        return dict(self._call("GET", "/machinelearning/job-timing"))

    def set_aml_job_timing(self, profile: str | None = None, **seconds: float) -> dict[str, float]:
        """``profile``: ``fast`` (the default, for tests) or ``realistic`` (minutes, as a Kubernetes compute shows);
        ``seconds``: any of queued, preparing, minRunning, finalizing, cancel over it. Jobs submitted afterwards
        use it; reset restores ``fast``."""
        body: dict[str, Any] = dict(seconds)
        if profile is not None:
            body["profile"] = profile
        return dict(self._call("PUT", "/machinelearning/job-timing", body))

    # -- request log ---------------------------------------------------------------------------------
    def requests(self, service: str | None = None) -> list[dict[str, Any]]:
        """Recent requests (service, method, path, status, origin, ip, principal), oldest first."""
        if service:
            return list(self._call("GET", "/requests", service=service)["value"])
        return list(self._call("GET", "/requests")["value"])

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    # -- preflight switches and scenarios (sandbox/scenarios.py) -------------------------------------
    def topology(self) -> dict[str, Any]:
        """The AKS side of the chain: OIDC issuer, workload identity, extension identity, federated credentials."""
        return dict(self._call("GET", "/preflight/topology"))

    def set_topology(self, **changes: Any) -> dict[str, Any]:
        """Change AKS-side switches by their camelCase names (``oidcIssuerEnabled=False``...)."""
        return dict(self._call("PATCH", "/preflight/topology", changes))

    def break_link(self, link: str) -> None:
        """Break one preflight link (ci-identity, factory, storage, compute, aks; rbac-freshness warns)."""
        self._call("POST", "/preflight/break", {"link": link})

    def apply_scenario(self, name: str) -> None:
        """Apply a named field scenario (aks-identity-gap, key-datastores) to the running sandbox."""
        self._call("POST", "/preflight/scenario", {"name": name})
    # -- Data Factory --------------------------------------------------------------------------------
    def set_private_endpoint_state(self, name: str, status: str) -> None:
        """Approve (``Approved``), un-approve (``Pending``) or reject a managed private endpoint of the factory."""
        self._call("PUT", f"/datafactory/private-endpoints/{name}", {"status": status})

    def set_run_query_page_size(self, size: int) -> None:
        """Rows per page of ``queryActivityruns`` / ``queryPipelineRuns`` (to exercise continuationToken)."""
        self._call("PUT", "/datafactory/page-size", {"size": size})

    def set_factory_trusted_bypass(self, enabled: bool) -> None:
        """Whether a storage account's ``bypass: AzureServices`` admits the factory's WebActivity MSI calls over
        the public path. Microsoft's documentation is silent on WebActivity; off (the field report) by default."""
        self._call("PUT", "/datafactory/trusted-service-bypass", {"enabled": enabled})
