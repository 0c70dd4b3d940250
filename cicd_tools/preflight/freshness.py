"""Link 6: RBAC freshness. A role assignment younger than the propagation time may not be in effect yet.

ARM caches role assignments: a new one can take minutes (up to about 10, longer with group membership) to
apply. Every assignment the other links relied on is listed with its ``createdOn``; one created less than
``fresh_minutes`` ago is a warning, never a failure: waiting is the fix.
"""

from __future__ import annotations

from datetime import timedelta

from cicd_tools.preflight.context import Context
from cicd_tools.preflight.model import Check, LinkResult, ok, warn
from cicd_tools.preflight.rbac import parse_time

LINK = "rbac-freshness"
TITLE = "RBAC freshness: assignments young enough not to have propagated"


def check(ctx: Context) -> LinkResult:
    window = timedelta(minutes=ctx.targets.fresh_minutes)
    seen: dict[tuple[str, str, str], str | None] = {}
    for grant in ctx.rbac.used:
        seen.setdefault((grant.principal_id, grant.role, grant.scope), grant.created_on)
    checks: list[Check] = []
    for (principal, role, scope), created in seen.items():
        when = parse_time(created)
        if when is not None and ctx.now - when < window:
            age = int((ctx.now - when).total_seconds() // 60)
            checks.append(warn("rbac-fresh-assignment", f"'{role}' for {principal} at {scope} was created {created} "
                               f"({age} min ago): it may not have propagated yet",
                               "Wait a few minutes and re-run preflight; ARM role caches refresh within about 10 "
                               "minutes (sign-in tokens may need renewing)."))
    if not checks:
        newest = max((c for c in seen.values() if c), default=None)
        checks.append(ok("rbac-fresh-assignment", f"{len(seen)} assignment(s) relied on; none younger than "
                         f"{ctx.targets.fresh_minutes:g} min (newest created {newest})"))
    return LinkResult(LINK, TITLE, tuple(checks))
