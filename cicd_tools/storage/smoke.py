"""Data-plane smoke test and account diagnosis: is storage usable from here, and if not, what is the fix.

The smoke test lists, then writes, reads back and deletes a probe blob; each failure is classified by
Azure's error code (AZURE_FACTS.md §3-§4: the SDK raises a plain ``HttpResponseError`` for both 403
codes, so we branch on ``error_code``). ``diagnose`` reads the account's ARM JSON and names what will bite.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from cicd_tools.storage.denied import retry_while_denied
from cicd_tools.storage.lease_tags import MAX_IP_RULES, MAX_TAGS, iso, leases_in
from cicd_tools.support.azerrors import AUTH_CODES, DNS_MARKERS, error_code_of, status_of
from cicd_tools.support.errors import (
    AuthenticationFailed,
    AzureError,
    CicdError,
    NetworkDenied,
    PermissionMissing,
    Throttled,
    TimeoutExpired,
)

log = logging.getLogger(__name__)

PROBE_PREFIX = "_cicd-smoke/"

FIXES = {
    "firewall": "The storage firewall refused this agent's IP, or a new rule has not propagated yet. Run"
    " `cicd-tools firewall open` before this step (it polls until the rule works). Hosted agents in the"
    " account's own Azure region, or behind a private endpoint, are never matched by IP rules: use a"
    " self-hosted agent in the VNet.",
    "rbac": "The identity is authenticated but has no data role. Assign 'Storage Blob Data Contributor' on"
    " the account (or container) to the pipeline identity; Owner/Contributor are management roles and grant"
    " no data access. New assignments can take a few minutes.",
    "authentication": "The token or key was refused. Check the service connection / federated credential"
    " (issuer, subject, audience api://AzureADTokenExchange), the tenant and the agent's clock; with"
    " --auth-mode key, the connection string.",
    "shared-key": "Shared key access is disabled on the account: use --auth-mode login (Entra ID).",
    "dns": "The account's host name did not resolve: check the account name (--account / CICD_STORAGE_ACCOUNT)"
    " or --blob-endpoint. A private endpoint needs the privatelink.blob zone linked to the agent's VNet (or a"
    " hosts entry).",
    "container": "The container does not exist: create it, or pass --container.",
    "timeout": "No answer in time: public network access disabled without a private route, or a proxy /"
    " NSG dropping the traffic.",
    "network": "Could not connect to the blob endpoint: check the endpoint URL, proxy and outbound rules.",
    "throttled": "Storage kept answering 503/500 or throttling: retry later.",
    "content": "The probe blob read back different bytes than were written: a proxy or middleware rewrites"
    " blob content.",
    "unknown": "Read the Azure error code; `cicd-tools storage diagnose` explains most storage settings.",
}

_DNS_MARKERS = DNS_MARKERS


@dataclass(frozen=True)
class Classified:
    """A data-plane failure: category, Azure's error code, and the fix."""

    category: str
    code: str | None
    message: str

    @property
    def fix(self) -> str:
        return FIXES.get(self.category, FIXES["unknown"])

    def to_error(self) -> CicdError:
        """The toolkit exception for this failure (for callers that raise)."""
        kinds: dict[str, type[CicdError]] = {
            "firewall": NetworkDenied,
            "rbac": PermissionMissing,
            "authentication": AuthenticationFailed,
            "shared-key": AuthenticationFailed,
            "timeout": TimeoutExpired,
            "throttled": Throttled,
        }
        return kinds.get(self.category, AzureError)(self.message, hint=self.fix, code=self.code)


def classify_data_plane_error(exc: BaseException) -> Classified:
    """Classify an azure-storage-blob / azure-identity exception by Azure's error code."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        ServiceRequestError,
        ServiceRequestTimeoutError,
        ServiceResponseError,
        ServiceResponseTimeoutError,
    )

    code = error_code_of(exc)
    status = status_of(exc)
    first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
    text = str(exc).lower()
    if code == "AuthorizationFailure":
        return Classified("firewall", code, f"403 AuthorizationFailure: {first}")
    if code == "AuthorizationPermissionMismatch":
        return Classified("rbac", code, f"403 AuthorizationPermissionMismatch: {first}")
    if code == "KeyBasedAuthenticationNotPermitted":
        return Classified("shared-key", code, f"403 KeyBasedAuthenticationNotPermitted: {first}")
    if code in AUTH_CODES or isinstance(exc, ClientAuthenticationError):
        return Classified("authentication", code or "ClientAuthenticationError", first)
    if code == "ContainerNotFound":
        return Classified("container", code, f"404 ContainerNotFound: {first}")
    if code == "ContentMismatch":
        return Classified("content", code, first)
    if isinstance(exc, (ServiceRequestTimeoutError, ServiceResponseTimeoutError, TimeoutError)):
        return Classified("timeout", "Timeout", first)
    if isinstance(exc, ServiceRequestError) and any(m in text for m in _DNS_MARKERS):
        return Classified("dns", "DnsResolutionFailed", first)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return Classified("timeout" if "timed out" in text else "network", "ConnectionFailed", first)
    if status == 429 or (status is not None and status >= 500):
        return Classified("throttled", code or str(status), f"{status} {code or 'error'}: {first}")
    return Classified("unknown", code or (str(status) if status else type(exc).__name__), first)


@dataclass(frozen=True)
class StepOutcome:
    """One smoke step: did it work, how long it took, and if not, why and the fix."""

    step: str  # list | write | read | delete
    ok: bool
    latency_ms: float | None = None
    skipped: bool = False
    category: str | None = None
    code: str | None = None
    message: str | None = None
    fix: str | None = None


@dataclass(frozen=True)
class SmokeResult:
    """The smoke test's verdict: ``usable`` only when every step worked."""

    account_url: str
    container: str
    blob_name: str
    usable: bool
    steps: tuple[StepOutcome, ...]

    @property
    def failure(self) -> StepOutcome | None:
        return next((s for s in self.steps if not s.ok and not s.skipped), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failure"] = asdict(self.failure) if self.failure else None
        return data


def _container(client: Any, container: str | None) -> Any:
    """A ContainerClient from a ``BlobServiceClient`` + name, or the ContainerClient given."""
    if hasattr(client, "get_container_client"):
        if not container:
            raise ValueError("a container name is needed with a BlobServiceClient")
        return client.get_container_client(container)
    return client


def smoke_test(
    client: Any,
    container: str | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    make_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    denied_budget: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SmokeResult:
    """List, then write, read back and delete ``_cicd-smoke/<uuid>.txt`` (BlobServiceClient or ContainerClient).

    ``denied_budget``: seconds each step retries 403 AuthorizationFailure (``retry_while_denied``).
    """
    client = _container(client, container)
    container = str(getattr(client, "container_name", container))
    blob_name = f"{PROBE_PREFIX}{make_id()}.txt"
    payload = f"cicd-tools smoke {blob_name}".encode()
    steps: list[StepOutcome] = []

    def run(step: str, action: Callable[[], object]) -> object | None:
        started = clock()
        try:
            value = (
                retry_while_denied(action, f"smoke {step}", budget=denied_budget, sleep=sleep, clock=clock)
                if denied_budget > 0
                else action()
            )
        except Exception as exc:
            found = classify_data_plane_error(exc)
            log.info("smoke %s failed: %s (%s)", step, found.code, found.category)
            steps.append(
                StepOutcome(
                    step,
                    False,
                    _ms(clock() - started),
                    category=found.category,
                    code=found.code,
                    message=found.message,
                    fix=found.fix,
                )
            )
            return None
        steps.append(StepOutcome(step, True, _ms(clock() - started)))
        return value if value is not None else True

    def listed() -> object:
        page: Any = next(iter(client.list_blobs(results_per_page=1).by_page()), [])
        return list(page)[:1] or True

    def write() -> object:
        return client.upload_blob(blob_name, payload, overwrite=True)

    def read() -> object:
        data = client.download_blob(blob_name).readall()
        if data != payload:
            raise _ContentMismatch(f"read {len(data)} bytes, expected {len(payload)} identical bytes")
        return True

    if run("list", listed) is None:
        steps += [StepOutcome(s, False, skipped=True) for s in ("write", "read", "delete")]
    elif run("write", write) is None:
        steps += [StepOutcome(s, False, skipped=True) for s in ("read", "delete")]
    else:
        run("read", read)
        run("delete", lambda: client.delete_blob(blob_name))  # clean up even when the read failed
    usable = all(s.ok for s in steps)
    return SmokeResult(str(getattr(client, "url", "")), container, blob_name, usable, tuple(steps))


class _ContentMismatch(Exception):
    error_code = "ContentMismatch"


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


def make_list_probe(
    client: Any,
    container: str | None = None,
    *,
    rbac_grace: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], bool]:
    """The default data-plane probe for ``firewall open``: list one blob of ``container``.

    403 AuthorizationFailure raises NetworkDenied (keep polling); AuthorizationPermissionMismatch answers "not
    yet" for ``rbac_grace`` seconds from the first one (a fresh role assignment may still be propagating; None:
    ``CICD_RBAC_GRACE`` or 10 s), then raises PermissionMissing (waiting will not help). A missing container still
    proves the network path.
    """
    from cicd_tools.storage.denied import default_rbac_grace

    client = _container(client, container)
    container = str(getattr(client, "container_name", container))
    grace = default_rbac_grace() if rbac_grace is None else rbac_grace
    first_mismatch: list[float] = []

    def probe() -> bool:
        try:
            # retry_total=0: the SDK's own retry (15 s backoff, 3 tries) would hide 503/429 from our deadline.
            next(iter(client.list_blobs(results_per_page=1, retry_total=0).by_page()), None)
        except Exception as exc:
            found = classify_data_plane_error(exc)
            if found.category == "container":
                log.warning("container %s does not exist; the network path works", container)
                return True
            if found.category == "rbac":
                first_mismatch[:] = first_mismatch or [clock()]
                waited = clock() - first_mismatch[0]
                if waited < grace:
                    log.info("probe: 403 AuthorizationPermissionMismatch; a new role assignment may still be "
                             "propagating, polling for up to %.0f s more", grace - waited)
                    return False
            err = found.to_error()
            if isinstance(err, Throttled):
                from cicd_tools.storage.arm import retry_after_seconds

                err.retry_after = retry_after_seconds(exc)
            raise err from exc
        return True

    return probe


# --- diagnose -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning | info
    code: str
    message: str


@dataclass(frozen=True)
class Diagnosis:
    account: str
    findings: tuple[Finding, ...]
    network_acls: Mapping[str, Any]  # exactly as Azure returned them

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "findings": [asdict(f) for f in self.findings],
            "networkAcls": self.network_acls,
        }


def diagnose(
    account: Mapping[str, Any], now: datetime, *, expiring_within: timedelta = timedelta(minutes=15)
) -> Diagnosis:
    """What in the account's settings will break CI tools, from its ARM JSON."""
    props = account.get("properties") or {}
    acls = props.get("networkAcls") or {}
    tags = account.get("tags") or {}
    out: list[Finding] = []

    def add(level: str, code: str, message: str) -> None:
        out.append(Finding(level, code, message))

    # The secure setting is shared key off (preflight agrees): a note for key-based tools, the warning when allowed.
    if props.get("allowSharedKeyAccess") is False:
        add(
            "info",
            "SharedKeyDisabled",
            "allowSharedKeyAccess is false (the secure setting; the toolkit needs identity access only): tools using"
            " account keys, connection strings or account SAS get 403 KeyBasedAuthenticationNotPermitted; use Entra"
            " ID (--auth-mode login, managed-identity linked services).",
        )
    else:
        add(
            "warning",
            "SharedKeyAllowed",
            f"allowSharedKeyAccess is {'true' if props.get('allowSharedKeyAccess') else 'not set (which means true)'}"
            ": anyone holding an account key or SAS bypasses Entra ID; identity access is all the toolkit needs"
            " (az storage account update --allow-shared-key-access false).",
        )
    access = str(props.get("publicNetworkAccess") or "Enabled")
    if access == "Disabled":
        add(
            "error",
            "PublicNetworkAccessDisabled",
            "publicNetworkAccess is Disabled: IP rules have no effect;"
            " only private endpoints reach the account (self-hosted agent in the VNet).",
        )
    elif access == "SecuredByPerimeter":
        add(
            "warning",
            "SecuredByPerimeter",
            "publicNetworkAccess is SecuredByPerimeter: the network security"
            " perimeter's access rules decide as well as the account's IP rules.",
        )
    default = str(acls.get("defaultAction") or "Allow")
    if default == "Allow":
        add(
            "info",
            "DefaultActionAllow",
            "networkAcls.defaultAction is Allow: every network may connect; no IP"
            " rule is needed (firewall open does nothing).",
        )
    else:
        add(
            "info",
            "DefaultActionDeny",
            "networkAcls.defaultAction is Deny: hosted agents need a temporary IP"
            " rule (firewall open), and IP rules never match traffic from the account's own Azure region.",
        )
    bypass = str(acls.get("bypass") or "None")
    if "AzureServices" not in bypass and default == "Deny":
        add(
            "warning",
            "NoAzureServicesBypass",
            f"bypass is '{bypass}': trusted Azure services (e.g. a factory"
            " or workspace using its managed identity without a private endpoint) are blocked too.",
        )
    rules = list(acls.get("ipRules") or [])
    level = "error" if len(rules) >= MAX_IP_RULES else "warning" if len(rules) >= MAX_IP_RULES * 0.9 else "info"
    add(level, "IpRuleCount", f"{len(rules)} of {MAX_IP_RULES} IP rules in use.")
    for rule in rules:
        value = str(rule.get("value", ""))
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            continue
        if not net.is_global:
            add(
                "warning",
                "PrivateIpRule",
                f"IP rule {value} is a private/reserved range: it never matches (private"
                " traffic arrives through VNet rules or private endpoints).",
            )
    if len(tags) >= MAX_TAGS:
        add("error", "TagLimitReached", f"{len(tags)} of {MAX_TAGS} tags: no room for a firewall lease tag.")
    for lease in leases_in(tags):
        if not lease.is_live(now):
            add(
                "warning",
                "ExpiredLease",
                f"lease {lease.lease_id} for {lease.ip} expired at"
                f" {iso(lease.expires_at)}: run `cicd-tools firewall sweep`.",
            )
        elif lease.expires_at - now <= expiring_within:
            add(
                "warning",
                "LeaseExpiringSoon",
                f"lease {lease.lease_id} for {lease.ip} expires at {iso(lease.expires_at)}.",
            )
        else:
            add("info", "Lease", f"lease {lease.lease_id} holds {lease.ip} until {iso(lease.expires_at)}.")
    return Diagnosis(str(account.get("name") or ""), tuple(out), acls)
