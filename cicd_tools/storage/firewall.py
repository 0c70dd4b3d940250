"""Temporary storage firewall rules: open, prove reachable, close (always), sweep what crashed runs left.

A run's rule is held by a lease (a ``cicd-fw-<leaseId>`` tag, see ``leases.py``) and recorded in a
state file before the PATCH, so ``close`` works after a crash and ``sweep`` after a lost runner.
Concurrency without ETags is handled by ``storage_arm.ArmOperation`` (converge, then settle).
The data plane is polled until it answers, never slept on.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cicd_tools.errors import UsageError
from cicd_tools.storage.agent_ip import validate_rule_ip
from cicd_tools.storage.arm import (
    AccountRef,
    ArmOperation,
    Probe,
    RetrySettings,
    Runtime,
    StorageAccountsApi,
    accounts_api,
)
from cicd_tools.storage.leases import (
    TAG_PREFIX,
    Change,
    Lease,
    StateEntry,
    StateFile,
    account_tags,
    covering_rule,
    iso,
    lease_expiry,
    lease_for_open,
    network_acls,
    parse_iso,
    parse_lease_tag,
    plan_close,
    plan_open,
    plan_sweep,
    rule_index,
)

__all__ = [
    "AccountRef",
    "CloseResult",
    "FirewallNotApplicable",
    "OpenResult",
    "Probe",
    "RetrySettings",
    "Runtime",
    "SweepResult",
    "close_rule",
    "open_rule",
    "sweep",
    "temporary_ip_rule",
]

log = logging.getLogger(__name__)


class FirewallNotApplicable(UsageError):
    """The account's network settings make a temporary IP rule pointless."""

    default_hint = "Use a self-hosted agent in the VNet with a private endpoint to the account."


@dataclass(frozen=True)
class OpenResult:
    account_id: str
    ip: str
    lease_id: str
    expires_at: str | None
    skipped: str | None = None  # e.g. "defaultAction Allow": nothing was changed
    rule_added: bool = False
    preexisting: bool = False
    covered_by: str | None = None
    rounds: int = 0
    reachable_after: float | None = None  # seconds from the rule being in place to a data-plane answer
    elapsed: float = 0.0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CloseResult:
    account_id: str
    lease_id: str
    ip: str | None
    lease_removed: bool
    rule_removed: bool
    nothing_to_do: str | None = None
    rounds: int = 0


@dataclass(frozen=True)
class SweepResult:
    account_id: str
    swept: tuple[Lease, ...]
    rules_removed: tuple[str, ...]
    rounds: int = 0


@contextlib.contextmanager
def _signals_deferred(redeliver: bool) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a rule is being removed: a second cancel must not strand the rule."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if received:
            log.warning("signal %s arrived while closing the firewall rule; handled after cleanup", received[0])
            if redeliver:
                signal.raise_signal(received[0])


def open_rule(
    client: Any,
    account: AccountRef,
    ip: str,
    lease_id: str,
    ttl: float,
    *,
    probe: Probe | None = None,
    timeout: float = 300.0,
    state: StateFile | None = None,
    retry: RetrySettings | None = None,
    runtime: Runtime | None = None,
    close_timeout: float = 120.0,
) -> OpenResult:
    """Add a leased IP rule for ``ip``, verify it stays, and (with ``probe``) wait until the data plane answers.

    On any failure after the account was read, whatever this call may have added is removed again.

    Raises: FirewallNotApplicable, TagBudgetExhausted, AzureError (classified), PermissionMissing (from the
    probe), TimeoutExpired.
    """
    ip = validate_rule_ip(ip)
    rt, retry = runtime or Runtime(), retry or RetrySettings()
    api = accounts_api(client)
    started = rt.clock()
    op = ArmOperation(api, account, timeout, retry, rt)
    current = op.get()
    props = current.get("properties") or {}
    acls = network_acls(current)
    expires = lease_expiry(rt.now(), ttl)
    if str(props.get("publicNetworkAccess") or "Enabled") == "Disabled":
        raise FirewallNotApplicable(
            f"{account.name} has publicNetworkAccess Disabled: IP rules cannot admit anything.",
            code="PublicNetworkAccessDisabled",
        )
    if str(acls.get("defaultAction") or "Allow") == "Allow":
        log.info("%s: networkAcls.defaultAction is Allow; no IP rule needed", account.name)
        if state is not None:
            state.put(StateEntry(account.id, lease_id, ip, iso(expires), None, "skipped"))
        return OpenResult(account.id, ip, lease_id, None, skipped="defaultAction Allow", elapsed=rt.clock() - started)
    warnings = []
    if props.get("publicNetworkAccess") == "SecuredByPerimeter":
        warnings.append("publicNetworkAccess is SecuredByPerimeter: the perimeter's access rules decide too")
    lease = lease_for_open(current, lease_id, ip, expires, rt.now())
    if state is not None:  # before the PATCH: a crash from here on can still be cleaned up
        state.put(StateEntry(account.id, lease_id, ip, iso(expires), lease.preexisting, "opening"))
    try:
        log.info("opening %s on %s (lease %s, until %s)", ip, account.name, lease_id, iso(expires))
        reachable_after = op.hold(lambda acct: plan_open(acct, lease), current, probe)
    except BaseException as exc:
        log.error("opening the firewall for %s failed (%s); removing whatever was added", ip, type(exc).__name__)
        with _signals_deferred(redeliver=False):
            _rollback(api, account, lease, state, close_timeout, retry, rt)
        raise
    if state is not None:
        state.set_phase(account.id, "open", preexisting=lease.preexisting)
    return OpenResult(
        account.id,
        ip,
        lease_id,
        iso(expires),
        rule_added=rule_index(acls, ip) is None and not lease.preexisting,
        preexisting=lease.preexisting,
        covered_by=covering_rule(acls, ip),
        rounds=op.rounds,
        reachable_after=reachable_after,
        elapsed=rt.clock() - started,
        warnings=tuple(warnings),
    )


def _rollback(
    api: StorageAccountsApi,
    ref: AccountRef,
    lease: Lease,
    state: StateFile | None,
    timeout: float,
    retry: RetrySettings,
    rt: Runtime,
) -> None:
    try:
        _close(api, ref, lease.lease_id, lease, state, timeout, retry, rt)
    except BaseException as close_error:  # the original error matters more: log loudly, do not mask it
        log.error(
            "FIREWALL RULE MAY REMAIN: could not remove %s from %s (lease %s): %s: %s. Run `cicd-tools firewall"
            " close`, or `firewall sweep` after %s.",
            lease.ip,
            ref.name,
            lease.lease_id,
            type(close_error).__name__,
            close_error,
            iso(lease.expires_at),
        )


def close_rule(
    client: Any,
    account: AccountRef,
    lease_id: str,
    *,
    fallback: Lease | None = None,
    timeout: float = 120.0,
    state: StateFile | None = None,
    retry: RetrySettings | None = None,
    runtime: Runtime | None = None,
) -> CloseResult:
    """Remove our lease tag, and our rule unless another live lease holds it or it predates our open.

    ``fallback`` (the state file's record) stands in when the tag is missing. Safe to call twice.
    """
    rt, retry = runtime or Runtime(), retry or RetrySettings()
    with _signals_deferred(redeliver=True):
        return _close(accounts_api(client), account, lease_id, fallback, state, timeout, retry, rt)


def _close(
    api: StorageAccountsApi,
    ref: AccountRef,
    lease_id: str,
    fallback: Lease | None,
    state: StateFile | None,
    timeout: float,
    retry: RetrySettings,
    rt: Runtime,
) -> CloseResult:
    op = ArmOperation(api, ref, timeout, retry, rt)
    before = op.get()
    now = rt.now()
    tags = account_tags(before)
    name = TAG_PREFIX + lease_id
    lease = fallback or (parse_lease_tag(name, tags[name]) if name in tags else None)

    def plan(acct: dict[str, Any]) -> Change | None:
        # Once our tag is gone, the lease we resolved keeps removing a rule that a stale writer brings back.
        return plan_close(acct, lease_id, lease, now)

    first = plan(before)
    if first is None or lease is None:
        if state is not None:
            state.set_phase(ref.id, "closed")
        return CloseResult(
            ref.id,
            lease_id,
            lease.ip if lease else None,
            False,
            False,
            nothing_to_do=f"no lease {lease_id} and no rule of ours on {ref.name}",
        )
    try:
        op.hold(plan, before, None)
    except BaseException:
        if state is not None:
            state.set_phase(ref.id, "close-failed")
        raise
    if state is not None:
        state.set_phase(ref.id, "closed")
    removed = (
        rule_index(network_acls(before), lease.ip) is not None and rule_index(first.network_acls, lease.ip) is None
    )
    return CloseResult(ref.id, lease_id, lease.ip, lease_removed=True, rule_removed=removed, rounds=op.rounds)


def sweep(
    client: Any,
    account: AccountRef,
    *,
    timeout: float = 120.0,
    retry: RetrySettings | None = None,
    runtime: Runtime | None = None,
) -> SweepResult:
    """Remove expired leases and the rules only they held (never a pre-existing rule)."""
    rt, retry = runtime or Runtime(), retry or RetrySettings()
    op = ArmOperation(accounts_api(client), account, timeout, retry, rt)
    before = op.get()
    now = rt.now()
    change, expired = plan_sweep(before, now)
    if change is None:
        return SweepResult(account.id, (), ())
    with _signals_deferred(redeliver=True):
        op.hold(lambda acct: plan_sweep(acct, now)[0], before, None)
    kept = {str(r.get("value")) for r in change.network_acls.get("ipRules") or []}
    removed = tuple(
        str(r.get("value")) for r in network_acls(before).get("ipRules") or [] if str(r.get("value")) not in kept
    )
    return SweepResult(account.id, tuple(expired), removed, op.rounds)


@contextlib.contextmanager
def temporary_ip_rule(
    client: Any,
    account: AccountRef,
    ip: str,
    lease_id: str,
    ttl: float,
    *,
    close_timeout: float = 120.0,
    **open_kwargs: Any,
) -> Iterator[OpenResult]:
    """Open on enter, close on exit: always, also on exceptions, KeyboardInterrupt and ``Interrupted``.

    If closing fails after the body failed, the close error is logged loudly and the body's error re-raised.
    """
    opened = open_rule(client, account, ip, lease_id, ttl, close_timeout=close_timeout, **open_kwargs)
    if opened.skipped:
        yield opened
        return
    close_kwargs = {k: open_kwargs[k] for k in ("state", "retry", "runtime") if k in open_kwargs}
    expires = parse_iso(opened.expires_at) if opened.expires_at else datetime.now(UTC)
    fallback = Lease(lease_id, opened.ip, expires, opened.preexisting)
    try:
        yield opened
    except BaseException:
        try:
            with _signals_deferred(redeliver=False):
                close_rule(client, account, lease_id, fallback=fallback, timeout=close_timeout, **close_kwargs)
        except BaseException as close_error:
            log.error(
                "FIREWALL RULE MAY REMAIN: closing %s on %s failed (%s: %s) after the step itself failed."
                " Run `cicd-tools firewall close`, or `firewall sweep` after %s.",
                opened.ip,
                account.name,
                type(close_error).__name__,
                close_error,
                opened.expires_at,
            )
        raise
    close_rule(client, account, lease_id, fallback=fallback, timeout=close_timeout, **close_kwargs)
