"""Temporary storage firewall rules: open, prove reachable, close (always), sweep what crashed runs left.

A run's rule is held by a lease (a ``cicd-fw-<leaseId>`` tag, see ``leases.py``) and recorded in a
state file before the PATCH, so ``close`` works after a crash and ``sweep`` after a lost runner.
Concurrency without ETags: ``arm.ArmOperation`` converges and settles each write, ``guard.RuleGuard``
defends the rule while it is held, and ``guard.watch_release`` keeps it removed for a grace window
after the close. The data plane is polled until it answers N times in a row, never slept on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
from cicd_tools.storage.closing import CloseResult, close_rule, remove_lease
from cicd_tools.storage.deadline import Deadline
from cicd_tools.storage.guard import (
    DEFAULT_GRACE,
    DEFAULT_INTERVAL,
    RENEW_FOR,
    Handoff,
    RuleGuard,
    signals_deferred,
    watch_release,
)
from cicd_tools.storage.lease_tags import Lease, iso, parse_iso
from cicd_tools.storage.leases import (
    StateEntry,
    StateFile,
    covering_rule,
    lease_expiry,
    lease_for_open,
    network_acls,
    plan_open,
    rule_index,
)
from cicd_tools.storage.sweep import SweepResult, sweep
from cicd_tools.support.errors import Interrupted, TimeoutExpired, UsageError

__all__ = [
    "AccountRef",
    "CloseResult",
    "FirewallNotApplicable",
    "OpenResult",
    "Probe",
    "RetrySettings",
    "RuleGuard",
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
    renew_by: str | None = None  # a guarded lease: dead after this unless its guard renews it


@dataclass(frozen=True)
class RollbackReport:
    """What a failed or cancelled open's rollback did (seen, not hoped): evidence for the caller's report."""

    account_id: str
    lease_id: str
    ip: str
    rule_added: bool  # a PATCH of ours landed or was in flight for a rule that was not there before
    lease_removed: bool
    rule_removed: bool
    note: str
    handed_off: bool = False  # a detached watcher keeps removing the rule for the grace window


def open_rule(
    client: Any,
    account: AccountRef,
    ip: str,
    lease_id: str,
    ttl: float,
    *,
    probe: Probe | None = None,
    timeout: float | Deadline = 300.0,
    state: StateFile | None = None,
    retry: RetrySettings | None = None,
    runtime: Runtime | None = None,
    close_timeout: float = 120.0,
    grace: float = DEFAULT_GRACE,
    handoff: Handoff | None = None,
    renew_for: float | None = None,
    on_rollback: Callable[[RollbackReport], None] | None = None,
) -> OpenResult:
    """Add a leased IP rule for ``ip``, verify it stays, and (with ``probe``) wait until the data plane answers
    ``retry.reachable_successes`` times in a row.

    ``renew_for``: the lease is guarded (``RuleGuard`` renews it); it dies that many seconds after its
    guard stops renewing it. On any failure after the account was read, whatever this call may have added
    is removed again. After a cancel or a timeout that removal gets 1.5 s in-process and ``handoff`` (a
    detached watcher) keeps removing for ``grace`` seconds; without ``handoff`` the watch runs here,
    bounded by ``close_timeout``. ``on_rollback`` hears what that removal did before the error is raised.

    Raises: FirewallNotApplicable, TagBudgetExhausted, AzureError (classified), PermissionMissing (from the
    probe), TimeoutExpired, Interrupted / KeyboardInterrupt (after the rollback).
    """
    ip = validate_rule_ip(ip)
    rt, retry = runtime or Runtime(), retry or RetrySettings()
    api = accounts_api(client)
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout, clock=rt.clock)
    started = rt.clock()
    op = ArmOperation(api, account, deadline, retry, rt)
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
    renew_by = min(expires, lease_expiry(rt.now(), renew_for)) if renew_for else None  # guarded: see guard.py
    lease = lease_for_open(current, lease_id, ip, expires, rt.now(), renew_by)
    if state is not None:  # before the PATCH: a crash from here on can still be cleaned up
        state.put(StateEntry(account.id, lease_id, ip, iso(expires), lease.preexisting, "opening"))
    try:
        log.info("opening %s on %s (lease %s, until %s)", ip, account.name, lease_id, iso(expires))
        reachable_after = op.hold(lambda acct: plan_open(acct, lease), current, probe, guarded=renew_by is not None)
    except BaseException as exc:
        log.error("opening the firewall for %s failed (%s: %s); removing whatever was added", ip,
                  type(exc).__name__, exc)
        with signals_deferred(redeliver=False):
            report = _rollback(api, account, lease, state, op, exc, retry, rt, close_timeout, grace, handoff)
            if on_rollback is not None:
                try:
                    on_rollback(report)
                except Exception as hook_error:  # evidence must never replace the real error
                    log.error("recording the rollback failed: %s: %s", type(hook_error).__name__, hook_error)
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
        renew_by=iso(renew_by) if renew_by else None,
    )


QUICK_ROLLBACK = 1.5  # seconds of in-process cleanup after a cancel or a timeout (CI kills soon after)


def _rollback(
    api: StorageAccountsApi,
    ref: AccountRef,
    lease: Lease,
    state: StateFile | None,
    op: ArmOperation,
    cause: BaseException,
    retry: RetrySettings,
    rt: Runtime,
    timeout: float,
    grace: float,
    handoff: Handoff | None,
) -> RollbackReport:
    """Remove what open may have added, and say what was seen (not what was hoped)."""
    if op.writes_sent == 0:
        log.error("rollback: no PATCH was sent to %s; nothing to remove", ref.name)
        if state is not None:
            state.set_phase(ref.id, "closed")
        return RollbackReport(ref.id, lease.lease_id, lease.ip, False, False, False,
                              "rollback: no PATCH was sent; nothing to remove")
    urgent = isinstance(cause, (Interrupted, KeyboardInterrupt, TimeoutExpired))
    in_flight = op.patch_in_flight or op.unconfirmed > 0
    seen = (
        "our PATCH was still unanswered when we stopped (it may land later)"
        if in_flight
        else f"{op.rounds} PATCH(es) of ours had landed"
    )
    budget = QUICK_ROLLBACK if urgent and handoff is not None else timeout
    closed: CloseResult | None = None
    try:
        closed = remove_lease(
            api, ref, lease.lease_id, lease, state, Deadline(budget, clock=rt.clock), retry, rt,
            settle=not (urgent and handoff is not None),  # the handed-off watcher settles it
        )
        found = closed.nothing_to_do or f"removed lease {lease.lease_id}" + (
            f" and rule {lease.ip}" if closed.rule_removed else f"; rule {lease.ip} kept (not only ours)"
        )
    except BaseException as close_error:
        found = f"could not finish the removal ({type(close_error).__name__}: {close_error})"
    def report(note: str, handed_off: bool = False) -> RollbackReport:
        removed = closed is not None and closed.rule_removed
        return RollbackReport(ref.id, lease.lease_id, lease.ip, rule_added=not lease.preexisting,
                              lease_removed=closed is not None and closed.lease_removed, rule_removed=removed,
                              note=note, handed_off=handed_off)

    if handoff is not None:
        try:
            handoff(lease, grace)
            log.error(
                "rollback on %s: %s; %s; a watcher keeps removing lease %s / rule %s for %.0f s.",
                ref.name, seen, found, lease.lease_id, lease.ip, grace,
            )
            return report(f"rollback: {seen}; {found}; a watcher keeps removing lease {lease.lease_id} / rule"
                          f" {lease.ip} for {grace:.0f} s", handed_off=True)
        except Exception as exc:
            log.error("rollback: could not start the release watcher: %s: %s", type(exc).__name__, exc)
    removals = 0
    if urgent is False or handoff is None:
        watch = min(grace, max(timeout, 0.0))
        try:
            removals = watch_release(api, ref, lease.lease_id, lease, watch, retry=retry, runtime=rt)
        except BaseException as exc:
            found += f"; the watch was cut short ({type(exc).__name__})"
    log.error(
        "rollback on %s: %s; %s; re-removed %d time(s) while watching. If lease %s shows up again, run"
        " `cicd-tools firewall close --lease-id %s`, or `firewall sweep` after %s.",
        ref.name, seen, found, removals, lease.lease_id, lease.lease_id, iso(lease.expires_at),
    )
    return report(f"rollback: {seen}; {found}; re-removed {removals} time(s) while watching")


@contextlib.contextmanager
def temporary_ip_rule(
    client: Any,
    account: AccountRef,
    ip: str,
    lease_id: str,
    ttl: float,
    *,
    close_timeout: float = 120.0,
    guard_interval: float | None = DEFAULT_INTERVAL,
    **open_kwargs: Any,
) -> Iterator[OpenResult]:
    """Open on enter, guard while held, close on exit: always, also on exceptions, KeyboardInterrupt and
    ``Interrupted``. Usable from long-lived processes: the guard is a daemon thread, stopped before the close.

    ``guard_interval`` None turns the guard off. With ``handoff`` in ``open_kwargs``, a cancel gets a quick
    in-process close and the release watch is handed off (so the process can exit at once). If closing
    fails after the body failed, the close error is logged loudly and the body's error re-raised.
    """
    if guard_interval:
        open_kwargs.setdefault("renew_for", RENEW_FOR)
    opened = open_rule(client, account, ip, lease_id, ttl, close_timeout=close_timeout, **open_kwargs)
    if opened.skipped:
        yield opened
        return
    close_kwargs = {k: open_kwargs[k] for k in ("state", "retry", "runtime", "grace") if k in open_kwargs}
    handoff: Handoff | None = open_kwargs.get("handoff")
    grace = float(open_kwargs.get("grace", DEFAULT_GRACE))
    expires = parse_iso(opened.expires_at) if opened.expires_at else datetime.now(UTC)
    renew_by = parse_iso(opened.renew_by) if opened.renew_by else None
    fallback = Lease(lease_id, opened.ip, expires, opened.preexisting, renew_by)
    guard = None
    if guard_interval:
        guard = RuleGuard(
            accounts_api(client), account, fallback, interval=guard_interval,
            retry=open_kwargs.get("retry"), runtime=open_kwargs.get("runtime"),
        ).start()
    try:
        yield opened
    except BaseException as exc:
        if guard is not None:
            guard.stop()
        urgent = isinstance(exc, (Interrupted, KeyboardInterrupt)) and handoff is not None
        try:
            with signals_deferred(redeliver=False):
                close_rule(
                    client, account, lease_id, fallback=fallback,
                    timeout=QUICK_ROLLBACK if urgent else close_timeout,
                    **{**close_kwargs, "grace": 0.0 if urgent else grace},
                )
        except BaseException as close_error:
            log.error(
                "FIREWALL RULE MAY REMAIN: closing %s on %s failed (%s: %s) after the step itself failed."
                " Run `cicd-tools firewall close --lease-id %s`, or `firewall sweep` after %s.",
                opened.ip,
                account.name,
                type(close_error).__name__,
                close_error,
                lease_id,
                opened.expires_at,
            )
        if urgent and handoff is not None:
            handoff(fallback, grace)
        raise
    if guard is not None:
        guard.stop()
    close_rule(
        client, account, lease_id, fallback=fallback, timeout=close_timeout, handoff=handoff, **close_kwargs
    )
