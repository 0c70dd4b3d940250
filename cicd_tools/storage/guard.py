"""Defend a held rule and watch a released one: what makes leases hold without ETags.

Microsoft.Storage PATCH has no ETag (AZURE_FACTS.md §4), so no write of ours can be made safe against
a competitor whose PATCH was computed from an older read and lands later: it silently replaces the
whole ``ipRules`` list and the whole tag map. Nothing can prevent that loss; it can only be bounded:

- while a rule is held, ``RuleGuard`` re-reads the account every ``interval`` seconds and re-applies
  our rule and lease tag when a stale write removed them (lost for at most one interval plus one
  PATCH, plus the propagation of the re-added rule);
- after a close, ``watch_release`` keeps re-reading for a grace window longer than a plausible ARM
  PATCH latency and removes our rule and tag again when a stale write brought them back; every
  resurrection it sees extends the watch (a slow competitor is about), up to four grace windows.

The guard runs as a thread in long-lived processes (``temporary_ip_rule``, ``flow``) or as a small
detached process that ``firewall open`` starts and ``firewall close`` stops (``storage/guard_process.py``).
Both stop at the lease's expiry, so a guard never outlives the lease that justifies it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from cicd_tools.storage.arm import AccountRef, ArmOperation, RetrySettings, Runtime, StorageAccountsApi
from cicd_tools.storage.deadline import Deadline
from cicd_tools.storage.lease_tags import Lease, parse_lease_tag
from cicd_tools.storage.leases import (
    Change,
    account_tags,
    covering_rule,
    network_acls,
    plan_close,
    plan_open,
    rule_index,
)

log = logging.getLogger(__name__)

# Hand a release watch to someone who outlives this call (a detached process): (lease, grace seconds).
Handoff = Callable[[Lease, float], None]

DEFAULT_GRACE = 15.0  # seconds: longer than the ARM PATCH latencies we measured against (up to 10 s)
DEFAULT_INTERVAL = 3.0  # guard re-read period; ARM read budgets are per subscription (see docs/firewall-guarantees.md)
RENEW_FOR = 300.0  # a guarded lease's renew-by is kept this far ahead: a dead guard's lease dies within it
RENEW_EVERY = 60.0  # ... by one PATCH this often (each renewal is a write competitors can race, so rarely)
CALL_LIMIT = 30.0  # one guard round may take at most this long


class RuleGuard:
    """Keeps ``lease``'s rule and tag on the account until stopped or the lease expires."""

    def __init__(
        self,
        api: StorageAccountsApi,
        ref: AccountRef,
        lease: Lease,
        *,
        interval: float = DEFAULT_INTERVAL,
        retry: RetrySettings | None = None,
        runtime: Runtime | None = None,
        renew_every: float = RENEW_EVERY,
        renew_for: float = RENEW_FOR,
    ) -> None:
        self.api, self.ref, self.lease, self.interval = api, ref, lease, interval
        self.renew_every, self.renew_for = renew_every, renew_for
        self.renewals = 0
        self.retry, self.rt = retry or RetrySettings(), runtime or Runtime()
        self.repairs = 0
        self.checks = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _renew(self) -> bool:
        """Move the lease's renew-by forward when it is due (never past the lease's expiry)."""
        lease, now = self.lease, self.rt.now()
        if lease.renew_by is None or (lease.renew_by - now).total_seconds() > self.renew_for - self.renew_every:
            return False
        renewed = min(lease.expires_at, (now + timedelta(seconds=self.renew_for)).replace(microsecond=0))
        self.lease = dataclasses.replace(lease, renew_by=renewed)
        return True

    def check_once(self) -> bool:
        """One round: read, renew our lease when due, and re-apply our rule and tag if a stale write removed
        them. True if it repaired something (a renewal alone is not a repair)."""
        self.checks += 1
        op = ArmOperation(self.api, self.ref, Deadline(CALL_LIMIT, clock=self.rt.clock), self.retry, self.rt)
        account = op.get()
        recorded = account_tags(account).get(self.lease.tag_name)
        handed = parse_lease_tag(self.lease.tag_name, recorded) if recorded else None
        if handed is not None and handed.ip == self.lease.ip and self.lease.preexisting and not handed.preexisting:
            # The lease that added the rule closed and handed it over (leases.hand_over): never re-claim it.
            self.lease = dataclasses.replace(self.lease, preexisting=False)
        if plan_open(account, self.lease) is None and not self._renew():
            return False
        acls = network_acls(account)
        lost = self.lease.tag_name not in account_tags(account) or (
            rule_index(acls, self.lease.ip) is None and covering_rule(acls, self.lease.ip) is None
        )
        if not lost:
            op.converge(lambda acct: plan_open(acct, self.lease), account)
            self.renewals += 1
            return False
        log.warning(
            "guard: lease %s (rule %s) on %s was removed by a concurrent write; re-applying",
            self.lease.lease_id, self.lease.ip, self.ref.name,
        )
        op.converge(lambda acct: plan_open(acct, self.lease), account)
        self.repairs += 1
        return True

    def expired(self) -> bool:
        return not self.lease.is_live(self.rt.now())

    def run(self, stop: threading.Event | None = None) -> None:
        """Check every ``interval`` until ``stop`` is set or the lease expires (errors are logged, not fatal)."""
        stop = stop or self._stop
        while not stop.wait(self.interval):
            if self.expired():
                log.info("guard: lease %s expired; the guard stops", self.lease.lease_id)
                return
            try:
                self.check_once()
            except Exception as exc:  # one failed round must not end the defence
                self.failures += 1
                log.warning("guard: checking lease %s failed: %s: %s", self.lease.lease_id, type(exc).__name__, exc)

    def start(self) -> RuleGuard:
        """Run in a daemon thread (for long-lived processes)."""
        self._thread = threading.Thread(target=self.run, name=f"firewall-guard-{self.lease.lease_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; a repair PATCH still in flight is covered by the close's release watch."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def watch_release(
    api: StorageAccountsApi,
    ref: AccountRef,
    lease_id: str,
    lease: Lease,
    grace: float,
    *,
    interval: float = 1.0,
    retry: RetrySettings | None = None,
    runtime: Runtime | None = None,
) -> int:
    """Keep removing our rule and tag for ``grace`` seconds after a close; returns how often it had to.

    A competitor that read the account before our close can land its PATCH (carrying our rule and tag
    back) up to its own read-to-land time later. Each resurrection seen extends the watch by ``grace``,
    up to ``4 * grace`` in all.
    """
    retry, rt = retry or RetrySettings(), runtime or Runtime()
    started = rt.clock()
    end, cap = started + grace, started + 4 * grace
    removals = 0
    while rt.clock() < end:
        rt.sleep(max(0.0, min(interval, end - rt.clock())))
        op = ArmOperation(api, ref, Deadline(min(CALL_LIMIT, max(end - rt.clock(), 1.0)), clock=rt.clock), retry, rt)
        try:
            account = op.get()
            now = rt.now()
            if plan_close(account, lease_id, lease, now) is None:
                continue
            log.warning(
                "after close, lease %s / rule %s came back on %s (a stale PATCH landed); removing it again",
                lease_id, lease.ip, ref.name,
            )
            op.converge(functools.partial(_replan_close, lease_id=lease_id, lease=lease, now=now), account)
        except Exception as exc:  # keep watching: the window matters more than one failed round
            log.warning("release watch of lease %s: %s: %s", lease_id, type(exc).__name__, exc)
            continue
        removals += 1
        end = min(max(end, rt.clock() + grace), cap)
    return removals


def _replan_close(account: dict[str, Any], *, lease_id: str, lease: Lease, now: datetime) -> Change | None:
    return plan_close(account, lease_id, lease, now)


@contextlib.contextmanager
def signals_deferred(redeliver: bool) -> Iterator[None]:
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
