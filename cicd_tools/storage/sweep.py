"""``sweep``: remove expired leases and the rules only they held (agents that died before their close)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cicd_tools.storage.arm import AccountRef, ArmOperation, RetrySettings, Runtime, accounts_api
from cicd_tools.storage.guard import signals_deferred
from cicd_tools.storage.lease_tags import Lease
from cicd_tools.storage.leases import network_acls, plan_sweep


@dataclass(frozen=True)
class SweepResult:
    account_id: str
    swept: tuple[Lease, ...]
    rules_removed: tuple[str, ...]
    rounds: int = 0


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
    with signals_deferred(redeliver=True):
        op.hold(lambda acct: plan_sweep(acct, now)[0], before, None)
    kept = {str(r.get("value")) for r in change.network_acls.get("ipRules") or []}
    removed = tuple(
        str(r.get("value")) for r in network_acls(before).get("ipRules") or [] if str(r.get("value")) not in kept
    )
    return SweepResult(account.id, tuple(expired), removed, op.rounds)
