"""Storage account management calls for the firewall: raw ARM JSON, one deadline, converge and settle.

Microsoft.Storage PATCH has no ETag (AZURE_FACTS.md §4): two runs that read-modify-write ``ipRules``
at the same time silently lose one rule. So every change is read-merge-PATCH-verify, repeated with
jittered backoff until a fresh GET needs no change, and then *held* under observation for a settle
window longer than a competitor's read-modify-write: a writer that read before our PATCH landed can
only overwrite it within that window, and a loss seen inside it is repaired before we return. Slower
writers are the guard's job (``guard.py``): the settle only makes ``open`` return on a verified state.

Every call runs under the command's ``Deadline`` (``deadline.py``): a hung ARM call, token fetch or
probe returns control when the time is up, naming the last status actually seen.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cicd_tools.storage.deadline import CallTimedOut, Deadline, bounded_call
from cicd_tools.storage.leases import Change
from cicd_tools.support.azerrors import classify_azure_error, error_code_of, status_of
from cicd_tools.support.errors import AzureError, CicdError, NetworkDenied, Throttled

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
    poll_max: float = 3.0  # ARM re-reads while settling / propagating (each may count a concurrent writer's undo)
    probe_max: float = 1.0  # data-plane probes at most this far apart: the rule is seen within a second
    reachable_successes: int = 3  # consecutive data-plane answers before "reachable" (propagation flaps)
    success_spacing: float = 0.5  # seconds between those answers
    probe_timeout: float = 30.0  # one probe may take at most this long (and never past the deadline)
    progress_every: float = 5.0  # seconds between progress lines while waiting


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
    text = str(exc)
    if error_code_of(exc) == "InvalidValuesForRequestParameters" and (
        "resourceAccessRules" in text or "virtualNetworkRules" in text
    ):
        field = "resourceAccessRules" if "resourceAccessRules" in text else "virtualNetworkRules"
        return AzureError(
            f"{what} was refused (400 InvalidValuesForRequestParameters on networkAcls.{field}): the Storage"
            f" resource provider re-validates every {field} entry carried back with an IP-rule change, and it"
            " refuses one that is already on the account. cicd-tools never drops other rules to get its own in.",
            hint="Fix or remove the refused entry on the account (a Defender for Storage StorageDataScanner"
            " resource access rule has failed like this: check the Defender plan's settings), or reach the"
            " account through a private endpoint instead of an IP rule.",
            code="InvalidValuesForRequestParameters",
        )
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
        self, api: StorageAccountsApi, ref: AccountRef, timeout: float | Deadline, retry: RetrySettings, rt: Runtime
    ) -> None:
        self.api, self.ref, self.retry, self.rt = api, ref, retry, rt
        self.deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout, clock=rt.clock)
        self.timeout = self.deadline.seconds
        self.rounds = 0  # PATCHes that Azure confirmed
        self.writes_sent = 0  # PATCHes sent, including those whose answer was lost (they may have landed)
        self.unconfirmed = 0  # PATCHes sent whose answer never came (timed out, dropped, interrupted)
        self.patch_in_flight = False  # True while waiting for a PATCH's answer (and after we abandon it)
        self.read_at = rt.clock()
        self.rmw_span = 0.0  # longest GET-start-to-PATCH-end we have seen: a competitor's window is alike
        self.probes = 0

    def remaining(self) -> float:
        return self.deadline.remaining()

    def wait(self, seconds: float, why: str) -> None:
        if seconds >= self.remaining():
            raise self.deadline.expire(f"{self.ref.name}: {why}")
        self.rt.sleep(seconds)

    def _bounded(self, what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return bounded_call(fn, self.remaining(), what)
        except CallTimedOut as exc:
            self.deadline.saw(f"no answer to {what} within {exc.waited:.1f} s")
            raise self.deadline.expire(what) from None

    def call(self, what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one idempotent ARM call; retry 429/5xx/dropped connections with backoff and Retry-After."""
        for attempt in range(self.retry.call_attempts):
            try:
                return self._bounded(what, fn)
            except CicdError:
                raise
            except Exception as exc:
                self.pause_after(exc, attempt, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def pause_after(self, exc: Exception, attempt: int, what: str) -> None:
        """Sleep before retry ``attempt + 1`` of a transient failure. Raises: the classified error otherwise."""
        self.deadline.saw(f"HTTP {status_of(exc) or '-'} {error_code_of(exc) or type(exc).__name__} on {what}")
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
        log.info("%s: %s; retrying in %.1f s", what, self.deadline.last_seen, delay)
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
        what = f"PATCH of the network rules of {self.ref.name}"
        for attempt in range(self.retry.call_attempts):
            change = plan(account)
            if change is None:
                return False
            self.writes_sent += 1
            self.unconfirmed += 1
            self.patch_in_flight = True  # stays True if we are interrupted or give up while waiting
            body = change.body()
            try:
                self._bounded(what, functools.partial(self.api.patch, self.ref, body))
            except CicdError:
                raise
            except Exception as exc:
                self.patch_in_flight = False  # answered (with an error): it may have landed all the same
                self.pause_after(exc, attempt, what)
                account = self.get()
                continue
            self.patch_in_flight = False
            self.unconfirmed -= 1
            self.rmw_span = max(self.rmw_span, self.rt.clock() - self.read_at)
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def settle_window(self) -> float:
        r = self.retry
        return min(r.settle_max, max(r.settle_min, r.settle_factor * self.rmw_span))

    def probe_once(self, probe: Probe) -> tuple[bool, float | None]:
        """One data-plane probe under the deadline: (answered, Retry-After seconds if the service asked)."""
        self.probes += 1
        limit = min(self.retry.probe_timeout, self.remaining())
        try:
            ok = bool(bounded_call(probe, limit, "data-plane probe"))
        except CallTimedOut as exc:
            self.deadline.saw(f"no answer from the data plane within {exc.waited:.1f} s")
            return False, None
        except Throttled as exc:
            self.deadline.saw(exc.message.split(":")[0] if exc.message else str(exc.code))
            return False, exc.retry_after
        except NetworkDenied as exc:
            self.deadline.saw(f"403 {exc.code or 'AuthorizationFailure'}")
            return False, None
        self.deadline.saw("200 from the data plane" if ok else "no data-plane answer")
        return ok, None

    def hold(
        self, plan: Plan, account: dict[str, Any], probe: Probe | None, *, guarded: bool = False, settle: bool = True
    ) -> float | None:
        """Converge, then keep verifying for the settle window (and poll ``probe`` until it answers
        ``reachable_successes`` times in a row, honouring Retry-After).

        A writer that keeps undoing the change (a stale PATCH landing again and again) restarts the settle
        window each time; after ``retry.rounds`` such repairs, a ``guarded`` hold stops settling (the guard
        defends the rule from here) and an unguarded one fails with ConcurrentUpdate instead of spinning
        until the deadline. Returns seconds from the first verified state to the probe's answer (None
        without a probe). Raises: AzureError, TimeoutExpired.
        """
        account = self.converge(plan, account)
        in_place = ok_since = last_note = self.rt.clock()
        reachable_after: float | None = None
        # Nothing written: no stale writer can undo what we never wrote. ``settle`` False: a watcher follows.
        settled = self.writes_sent == 0 or not settle
        delay = probe_delay = self.retry.poll_initial
        streak, next_probe, next_check, repairs = 0, in_place, in_place + delay, 0
        need = max(1, self.retry.reachable_successes)
        while True:
            now = self.rt.clock()
            if reachable_after is None and probe is not None and now >= next_probe:
                ok, hinted = self.probe_once(probe)
                streak = streak + 1 if ok else 0
                if streak >= need:
                    reachable_after = self.rt.clock() - in_place
                    log.info(
                        "data plane of %s reachable %.1f s after the rule was in place (%d answers in a row)",
                        self.ref.name, reachable_after, need,
                    )
                else:
                    pause = self.retry.success_spacing if ok else probe_delay
                    probe_delay = min(self.retry.probe_max, probe_delay * self.retry.poll_factor)
                    next_probe = self.rt.clock() + max(pause, hinted or 0.0)
                    if hinted and next_probe > self.deadline.end:
                        raise self.deadline.expire(
                            f"the data plane of {self.ref.name} asked to retry after {hinted:.0f} s, beyond the"
                            f" remaining {max(self.remaining(), 0):.0f} s",
                            hint="Storage is throttling this account: retry later, or raise --timeout.",
                        )
                    if hinted:
                        log.info("data plane of %s asked to retry after %.0f s; waiting", self.ref.name, hinted)
            settled = settled or self.rt.clock() - ok_since >= self.settle_window()
            if settled and (probe is None or reachable_after is not None):
                return reachable_after
            now = self.rt.clock()
            if now - last_note >= self.retry.progress_every:
                last_note = now
                log.info(
                    "waiting for %s on %s: %.1f s elapsed, %d probes, last seen: %s",
                    "the data plane" if probe is not None and reachable_after is None else "the rules to settle",
                    self.ref.name, self.deadline.elapsed(), self.probes, self.deadline.last_seen or "-",
                )
            step = max(next_check - now, 0.05)
            if probe is not None and reachable_after is None:
                step = min(step, max(next_probe - now, 0.05))
            self.wait(step, self._waiting_for(probe, reachable_after, need))
            if self.rt.clock() < next_check:
                continue  # woken for a probe only: ARM is re-read at its own (slower) pace
            delay = min(self.retry.poll_max, delay * self.retry.poll_factor)
            next_check = self.rt.clock() + delay
            # While we wait anyway (settling, or for propagation), keep checking that our change is still
            # there: a rule lost to a stale writer would otherwise be polled for until the timeout.
            if not settled or reachable_after is None:
                account = self.get()
                if plan(account) is not None:
                    log.info("a concurrent write undid our change on %s; re-applying", self.ref.name)
                    self.converge(plan, account)
                    ok_since = self.rt.clock()
                    streak = 0
                    repairs += 1
                    if repairs >= self.retry.rounds and not settled:
                        if not guarded:
                            raise AzureError(
                                f"another writer kept undoing our change on {self.ref.name} ({repairs} repairs"
                                " while settling; the PATCH has no ETag).",
                                hint="Another pipeline rewrites the account's network rules again and again"
                                " from old reads; serialise it, or run `firewall open` with its guard"
                                " (--guard-interval).",
                                code="ConcurrentUpdate",
                            )
                        log.warning("%s: a writer keeps undoing our change; the guard defends it from here",
                                    self.ref.name)
                        settled = True

    def _waiting_for(self, probe: Probe | None, reachable_after: float | None, need: int) -> str:
        if probe is None or reachable_after is not None:
            return "concurrent writers kept undoing the change"
        seen = self.deadline.last_seen or ""
        why = f"the rule is in place but the data plane did not answer {need} times in a row"
        if seen.startswith("403"):
            why += (
                " (a new rule can take tens of seconds; if it never works, the agent's traffic does not come"
                " from this IP: same-region or private egress)"
            )
        elif seen:
            why += " (the data plane itself is failing or throttling: not a firewall problem)"
        return why
