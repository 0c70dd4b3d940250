"""Close a temporary storage firewall rule: remove our lease tag and rule, then watch for a stale PATCH.

``close_rule`` removes the lease tag and, unless another live lease holds it or it predates our open, the rule
(``leases.plan_close``); then ``guard.watch_release`` keeps them removed for a grace window, since a competitor's
PATCH computed from an older read can bring them back (no ETags, AZURE_FACTS.md §4). With a ``Handoff``, a
cancel hands the removal (or only the watch) to a detached watcher and exits at once. ``firewall.py`` opens.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.storage.arm import AccountRef, ArmOperation, RetrySettings, Runtime, StorageAccountsApi, accounts_api
from cicd_tools.storage.deadline import Deadline
from cicd_tools.storage.guard import DEFAULT_GRACE, Handoff, signals_deferred, watch_release
from cicd_tools.storage.lease_tags import TAG_PREFIX, Lease, parse_lease_tag
from cicd_tools.storage.leases import Change, StateFile, account_tags, network_acls, plan_close, rule_index
from cicd_tools.support.errors import Interrupted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloseResult:
    account_id: str
    lease_id: str
    ip: str | None
    lease_removed: bool
    rule_removed: bool
    nothing_to_do: str | None = None
    rounds: int = 0
    re_removed: int = 0  # times a stale PATCH brought the rule or tag back during the watch
    watched: float = 0.0  # seconds the release watch ran
    lease: Lease | None = field(default=None, repr=False, compare=False)


def close_rule(
    client: Any,
    account: AccountRef,
    lease_id: str,
    *,
    fallback: Lease | None = None,
    timeout: float | Deadline = 120.0,
    state: StateFile | None = None,
    retry: RetrySettings | None = None,
    runtime: Runtime | None = None,
    grace: float = DEFAULT_GRACE,
    handoff: Handoff | None = None,
    watch: bool = True,
) -> CloseResult:
    """Remove our lease tag, and our rule unless another live lease holds it or it predates our open; then
    keep removing them for ``grace`` seconds (a competitor's stale PATCH can bring them back).

    ``fallback`` (the state file's record) stands in when the tag is missing. Safe to call twice. With
    ``handoff``, a cancel (SIGINT/SIGTERM) at any point, a held PATCH included, hands the removal and its
    watch to ``handoff`` (a detached watcher) and re-raises at once, as ``open_rule``'s rollback does;
    without it, signals wait until the removal is done. ``watch=False`` (with ``handoff``) hands the watch to
    ``handoff`` right after the removal instead of watching here (a cancelled flow exits without waiting for it).
    """
    rt, retry = runtime or Runtime(), retry or RetrySettings()
    api = accounts_api(client)
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout, clock=rt.clock)
    resolved: list[Lease] = []
    if handoff is None:
        with signals_deferred(redeliver=True):
            result = remove_lease(api, account, lease_id, fallback, state, deadline, retry, rt)
    else:
        try:
            # A watch follows (here, or the detached watcher): it re-removes what a stale PATCH brings back, so
            # the removal does not settle first, and the state says "closed" as soon as the PATCH has landed.
            result = remove_lease(api, account, lease_id, fallback, state, deadline, retry, rt, resolved=resolved,
                            settle=grace <= 0)
        except (Interrupted, KeyboardInterrupt):
            known = fallback or (resolved[0] if resolved else None)
            with signals_deferred(redeliver=False):
                _hand_off_interrupted_close(account, lease_id, known, grace, handoff)
            raise
    lease = fallback or result.lease
    if lease is None or grace <= 0:
        return result
    if not watch and handoff is not None:
        handoff(lease, grace)
        if state is not None:  # the removal is done: only the watch goes on, detached
            state.set_phase(account.id, "closed", lease_id=lease_id)
        return result
    started = rt.clock()
    log.info("watching %s for %.0f s: a stale PATCH may still bring lease %s back", account.name, grace, lease_id)
    try:
        removals = watch_release(api, account, lease_id, lease, grace, retry=retry, runtime=rt)
    except BaseException:
        if handoff is not None:
            handoff(lease, grace)
        raise
    return dataclasses.replace(result, re_removed=removals, watched=round(rt.clock() - started, 1))


def _hand_off_interrupted_close(
    ref: AccountRef, lease_id: str, lease: Lease | None, grace: float, handoff: Handoff
) -> None:
    """A cancel cut the close short (a PATCH may be in flight): a detached watcher finishes the removal."""
    if lease is None:
        log.error(
            "close of lease %s on %s interrupted before the lease was read; nothing was changed. Run"
            " `cicd-tools firewall close --lease-id %s` again (or `firewall sweep` after it expires).",
            lease_id, ref.name, lease_id,
        )
        return
    window = grace if grace > 0 else DEFAULT_GRACE  # the watcher does the removal itself: never zero
    try:
        handoff(lease, window)
    except Exception as exc:
        log.error(
            "close of lease %s on %s interrupted, and the release watcher could not start (%s: %s): rule %s may"
            " remain. Run `cicd-tools firewall close --lease-id %s` again.",
            lease_id, ref.name, type(exc).__name__, exc, lease.ip, lease_id,
        )
        return
    log.error(
        "close of lease %s on %s interrupted (a PATCH of ours may still land); a watcher keeps removing lease %s"
        " / rule %s for %.0f s.", lease_id, ref.name, lease_id, lease.ip, window,
    )


def remove_lease(
    api: StorageAccountsApi,
    ref: AccountRef,
    lease_id: str,
    fallback: Lease | None,
    state: StateFile | None,
    timeout: float | Deadline,
    retry: RetrySettings,
    rt: Runtime,
    *,
    settle: bool = True,
    resolved: list[Lease] | None = None,
) -> CloseResult:
    op = ArmOperation(api, ref, timeout, retry, rt)
    before = op.get()
    now = rt.now()
    tags = account_tags(before)
    name = TAG_PREFIX + lease_id
    lease = fallback or (parse_lease_tag(name, tags[name]) if name in tags else None)
    if lease is not None and resolved is not None:
        resolved.append(lease)  # the caller's interrupt handler needs it if the PATCH below is cut short

    def plan(acct: dict[str, Any]) -> Change | None:
        # Once our tag is gone, the lease we resolved keeps removing a rule that a stale writer brings back.
        return plan_close(acct, lease_id, lease, now)

    first = plan(before)
    if first is None or lease is None:
        if state is not None:
            state.set_phase(ref.id, "closed", lease_id=lease_id)
        return CloseResult(
            ref.id,
            lease_id,
            lease.ip if lease else None,
            False,
            False,
            nothing_to_do=f"no lease {lease_id} and no rule of ours on {ref.name}",
            lease=lease,
        )
    try:
        op.hold(plan, before, None, guarded=True, settle=settle)  # the release watch (or its handoff) defends
    except BaseException:
        if state is not None:
            state.set_phase(ref.id, "close-failed", lease_id=lease_id)
        raise
    if state is not None:
        state.set_phase(ref.id, "closed", lease_id=lease_id)
    removed = (
        rule_index(network_acls(before), lease.ip) is not None and rule_index(first.network_acls, lease.ip) is None
    )
    return CloseResult(
        ref.id, lease_id, lease.ip, lease_removed=True, rule_removed=removed, rounds=op.rounds, lease=lease
    )
