"""Storage account management calls for the firewall: raw ARM JSON, one retry budget, converge and settle.

Microsoft.Storage PATCH has no ETag (AZURE_FACTS.md §4): two runs that read-modify-write ``ipRules``
at the same time silently lose one rule. So every change is read-merge-PATCH-verify, repeated with
jittered backoff until a fresh GET needs no change, and then *held* under observation for a settle
window longer than a competitor's read-modify-write: a writer that read before our PATCH landed can
only overwrite it within that window, and a loss seen inside it is repaired before we return.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cicd_tools.azerrors import classify_azure_error, error_code_of, status_of
from cicd_tools.errors import AzureError, CicdError, NetworkDenied, Throttled, TimeoutExpired
from cicd_tools.storage.leases import Change

log = logging.getLogger(__name__)

Probe = Callable[[], bool]  # True when the data plane answered; raises classified CicdErrors
Plan = Callable[[dict[str, Any]], Change | None]  # account JSON -> what to PATCH, None when satisfied


@dataclass(frozen=True)
class AccountRef:
    """Which storage account (the management client is already bound to the subscription)."""

    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{self.name}"
        )


class StorageAccountsApi(Protocol):
    """The two management calls the firewall needs, on raw ARM JSON."""

    def get(self, ref: AccountRef) -> dict[str, Any]: ...

    def patch(self, ref: AccountRef, body: dict[str, Any]) -> dict[str, Any]: ...


def _raw_json(pipeline_response: Any, _deserialized: Any, _headers: Any) -> dict[str, Any]:
    data = pipeline_response.http_response.json()
    return data if isinstance(data, dict) else {}


class MgmtStorageAccounts:
    """``StorageAccountsApi`` over azure-mgmt-storage's ``StorageManagementClient``, JSON in and out.

    Raw JSON both ways, so fields this SDK version does not model (``ipv6Rules``...) go back unchanged.
    azure-core's RetryPolicy is switched off per call (``retry_total=0``): it would retry 429/5xx up to
    10 times with its own backoff (and not retry a PATCH whose connection dropped), hiding the budget.
    Our loop is the only retrier, so ``--timeout`` and Retry-After are honoured exactly.
    """

    def __init__(self, client: Any) -> None:
        self._ops = client.storage_accounts

    def get(self, ref: AccountRef) -> dict[str, Any]:
        result: dict[str, Any] = self._ops.get_properties(ref.resource_group, ref.name, cls=_raw_json, retry_total=0)
        return result

    def patch(self, ref: AccountRef, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode("utf-8")
        result: dict[str, Any] = self._ops.update(
            ref.resource_group, ref.name, payload, content_type="application/json", cls=_raw_json, retry_total=0
        )
        return result


def accounts_api(client: Any) -> StorageAccountsApi:
    """Wrap a ``StorageManagementClient``; pass anything already speaking ``StorageAccountsApi`` through."""
    if hasattr(client, "storage_accounts"):
        return MgmtStorageAccounts(client)
    api: StorageAccountsApi = client
    return api


@dataclass(frozen=True)
class RetrySettings:
    """Retry budget: per-call retries (429/5xx/dropped), rounds lost to writers, settle and poll pacing."""

    call_attempts: int = 6
    rounds: int = 8
    base_delay: float = 1.0
    max_delay: float = 20.0
    settle_min: float = 1.0
    settle_factor: float = 3.0  # times our own read-modify-write span
    settle_max: float = 30.0
    poll_initial: float = 0.25
    poll_factor: float = 1.5
    poll_max: float = 3.0


@dataclass(frozen=True)
class Runtime:
    """Injected time and randomness, so tests never wait."""

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rng: random.Random = field(default_factory=random.Random)


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds from a response's ``retry-after-ms`` / ``Retry-After`` (delta or HTTP date), if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("Retry-After", 1.0)):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - time.time())
    return None


def _is_transient(exc: BaseException) -> bool:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    status = status_of(exc)
    if status is not None:
        return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))
    return isinstance(exc, (ServiceRequestError, ServiceResponseError))


def classify_arm(exc: BaseException, what: str) -> CicdError:
    if error_code_of(exc) == "AuthorizationFailed":
        return AzureError(
            f"{what} was refused by Azure Resource Manager (403 AuthorizationFailed).",
            hint="The pipeline identity needs Microsoft.Storage/storageAccounts/read and /write on the account"
            " (e.g. 'Storage Account Contributor'); data roles do not cover management calls.",
            code="AuthorizationFailed",
        )
    return classify_azure_error(exc, what=what)


class ArmOperation:
    """One bounded operation on one account: retrying calls, converging plans, settling."""

    def __init__(
        self, api: StorageAccountsApi, ref: AccountRef, timeout: float, retry: RetrySettings, rt: Runtime
    ) -> None:
        self.api, self.ref, self.retry, self.rt = api, ref, retry, rt
        self.deadline = rt.clock() + timeout
        self.timeout = timeout
        self.rounds = 0  # PATCHes that Azure confirmed
        self.writes_sent = 0  # PATCHes sent, including those whose answer was lost (they may have landed)
        self.read_at = rt.clock()
        self.rmw_span = 0.0  # longest GET-start-to-PATCH-end we have seen: a competitor's window is alike

    def remaining(self) -> float:
        return self.deadline - self.rt.clock()

    def wait(self, seconds: float, why: str) -> None:
        if seconds > self.remaining() or self.remaining() <= 0:
            raise TimeoutExpired(
                f"gave up on {self.ref.name} after {self.timeout:.0f} s: {why}",
                hint="Raise --timeout. A failed open removes what it added; a failed close leaves an expiring"
                " lease for `cicd-tools firewall sweep`.",
            )
        self.rt.sleep(seconds)

    def call(self, what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one idempotent ARM call; retry 429/5xx/dropped connections with backoff and Retry-After."""
        for attempt in range(self.retry.call_attempts):
            try:
                return fn()
            except CicdError:
                raise
            except Exception as exc:
                self.pause_after(exc, attempt, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def pause_after(self, exc: Exception, attempt: int, what: str) -> None:
        """Sleep before retry ``attempt + 1`` of a transient failure. Raises: the classified error otherwise."""
        if not _is_transient(exc) or attempt >= self.retry.call_attempts - 1:
            raise classify_arm(exc, what) from exc
        delay = self._backoff(attempt)
        hinted = retry_after_seconds(exc)
        if hinted is not None:
            delay = max(delay, hinted)
        if delay > self.remaining():
            err = classify_arm(exc, what)
            if hinted is not None:
                raise Throttled(
                    f"{err.message} Azure asked to retry after {hinted:.0f} s, beyond the remaining"
                    f" budget of {max(self.remaining(), 0):.0f} s.",
                    code=err.code,
                ) from exc
            err.message += f" (gave up: the next retry would pass the {self.timeout:.0f} s budget)"
            err.args = (err.message,)
            raise err from exc
        log.info(
            "%s: %s (HTTP %s); retrying in %.1f s",
            what,
            error_code_of(exc) or type(exc).__name__,
            status_of(exc),
            delay,
        )
        self.rt.sleep(delay)

    def _backoff(self, n: int) -> float:
        ceiling = min(self.retry.max_delay, self.retry.base_delay * (2**n))
        return self.rt.rng.uniform(ceiling / 2, ceiling)

    def get(self) -> dict[str, Any]:
        self.read_at = self.rt.clock()
        return self.call(f"reading storage account {self.ref.name}", lambda: self.api.get(self.ref))

    def converge(self, plan: Plan, account: dict[str, Any]) -> dict[str, Any]:
        """PATCH until a fresh GET needs no change; returns that account. Raises: AzureError, TimeoutExpired."""
        patches = 0
        while True:
            change = plan(account)
            if change is None:
                return account
            if patches:
                if patches >= self.retry.rounds:
                    raise AzureError(
                        f"another writer kept overwriting the network rules of {self.ref.name}"
                        f" ({patches} PATCHes lost; the PATCH has no ETag).",
                        hint="Another pipeline changes the same account; re-run, or serialise the firewall step.",
                        code="ConcurrentUpdate",
                    )
                log.info("network rules of %s changed under us; merging again (round %d)", self.ref.name, patches)
                # Jitter spreads the writers that collided, so the next round is less likely to collide again.
                self.wait(self._backoff(patches - 1), "concurrent writers kept overwriting the rules")
                account = self.get()
            if not self._patch_fresh(plan, account):
                return self.get()
            patches += 1
            self.rounds += 1
            account = self.get()

    def _patch_fresh(self, plan: Plan, account: dict[str, Any]) -> bool:
        """PATCH what ``plan`` wants; after a transient failure wait, re-read and re-plan. False: nothing to do.

        A PATCH body is never re-sent after a pause: a body computed from an old read would undo other
        writers' changes, and it keeps every writer's read-to-write window (what the settle covers) short.
        """
        what = f"updating the network rules of {self.ref.name}"
        for attempt in range(self.retry.call_attempts):
            change = plan(account)
            if change is None:
                return False
            self.writes_sent += 1
            try:
                self.api.patch(self.ref, change.body())
            except CicdError:
                raise
            except Exception as exc:
                self.pause_after(exc, attempt, what)
                account = self.get()
                continue
            self.rmw_span = max(self.rmw_span, self.rt.clock() - self.read_at)
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def settle_window(self) -> float:
        r = self.retry
        return min(r.settle_max, max(r.settle_min, r.settle_factor * self.rmw_span))

    def hold(self, plan: Plan, account: dict[str, Any], probe: Probe | None) -> float | None:
        """Converge, then keep verifying for the settle window (and poll ``probe`` until it answers).

        Returns seconds from the first verified state to the probe's answer (None without a probe).
        """
        account = self.converge(plan, account)
        in_place = ok_since = self.rt.clock()
        reachable_after: float | None = None
        settled = self.writes_sent == 0  # nothing written: no stale writer can undo what we never wrote
        delay = self.retry.poll_initial
        while True:
            if reachable_after is None and probe is not None and probe_once(probe):
                reachable_after = self.rt.clock() - in_place
                log.info(
                    "data plane of %s reachable %.1f s after the rule was in place", self.ref.name, reachable_after
                )
            settled = settled or self.rt.clock() - ok_since >= self.settle_window()
            if settled and (probe is None or reachable_after is not None):
                return reachable_after
            what = (
                "concurrent writers kept undoing the change"
                if probe is None or reachable_after is not None
                else "the rule is in place but the data plane still answers 403 AuthorizationFailure"
                " (a new rule can take tens of seconds; if it never works, the agent's traffic does not come"
                " from this IP: same-region or private egress)"
            )
            self.wait(min(delay, max(self.remaining(), 0.0)), what)
            delay = min(self.retry.poll_max, delay * self.retry.poll_factor)
            # While we wait anyway (settling, or for propagation), keep checking that our change is still
            # there: a rule lost to a stale writer would otherwise be polled for until the timeout.
            if not settled or reachable_after is None:
                account = self.get()
                if plan(account) is not None:
                    log.info("a concurrent write undid our change on %s; re-applying", self.ref.name)
                    self.converge(plan, account)
                    ok_since = self.rt.clock()


def probe_once(probe: Probe) -> bool:
    try:
        return bool(probe())
    except (NetworkDenied, Throttled) as exc:  # not propagated yet / transient: keep polling
        log.debug("data-plane probe: %s", exc.code)
        return False
