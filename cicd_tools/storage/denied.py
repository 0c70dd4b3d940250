"""Retrying 403 AuthorizationFailure briefly: right after ``firewall open`` a new rule can still flap.

AZURE_FACTS.md §4: a new rule can admit, refuse, then admit again for a while, so one refusal right after
the rule was proven reachable is not yet a verdict. ``smoke`` and ``code register`` retry it within a short
budget and log every retry; any other error passes at once.

A 403 AuthorizationPermissionMismatch (no data role) is retried too, but only for ``rbac_grace`` seconds (10 s;
``CICD_RBAC_GRACE``): a role assigned moments ago may still be propagating (Azure RBAC: up to 10 minutes), while a
role that is simply missing should fail soon with its fix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from cicd_tools.support.errors import NetworkDenied

log = logging.getLogger(__name__)
T = TypeVar("T")

DENIED_BUDGET = 30.0  # seconds a step retries 403 AuthorizationFailure: a fresh rule may still flap
DENIED_BUDGET_ENV = "CICD_DENIED_BUDGET"  # overrides it for smoke and register (e.g. 0s where no rule is fresh)
RBAC_GRACE = 10.0  # seconds a 403 AuthorizationPermissionMismatch is retried: a fresh role may still propagate
RBAC_GRACE_ENV = "CICD_RBAC_GRACE"  # overrides it for smoke, register and the firewall probe (0: a verdict at once)


def default_budget() -> float:
    """``CICD_DENIED_BUDGET`` when set (a duration: 10s, 1m, 0), else 30 s. Raises: UsageError when malformed."""
    import os

    text = os.environ.get(DENIED_BUDGET_ENV, "").strip()
    if not text:
        return DENIED_BUDGET
    if text in ("0", "0s"):
        return 0.0
    from cicd_tools.storage.lease_tags import parse_duration

    return parse_duration(text)


def default_rbac_grace() -> float:
    """``CICD_RBAC_GRACE`` when set (a duration: 10s, 1m, 0), else 10 s. Raises: UsageError when malformed."""
    import os

    text = os.environ.get(RBAC_GRACE_ENV, "").strip()
    if not text:
        return RBAC_GRACE
    if text in ("0", "0s"):
        return 0.0
    from cicd_tools.storage.lease_tags import parse_duration

    return parse_duration(text)


def retry_while_denied(
    fn: Callable[[], T],
    what: str,
    *,
    budget: float | None = None,
    rbac_grace: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``fn()``, retried while the storage firewall answers 403 AuthorizationFailure, for ``budget`` seconds.

    Right after ``firewall open`` a rule can still flap (AZURE_FACTS.md §4: it admits, refuses, admits
    again), so one refusal is not yet a verdict. Each retry is logged; other errors pass at once.
    ``budget`` None: ``default_budget()``. A missing data role (AuthorizationPermissionMismatch) is retried
    within ``min(budget, rbac_grace)`` (``rbac_grace`` None: ``default_rbac_grace()``).
    Raises: whatever ``fn`` raised last.
    """
    if budget is None:
        budget = default_budget()
    if rbac_grace is None:
        rbac_grace = default_rbac_grace()
    started, delay, attempts = clock(), 0.5, 0
    while True:
        try:
            return fn()
        except Exception as exc:
            attempts += 1
            firewall = isinstance(exc, NetworkDenied) or _is_refusal(exc, "AuthorizationFailure")
            role = not firewall and _is_refusal(exc, "AuthorizationPermissionMismatch")
            left = (budget if firewall else min(budget, rbac_grace)) - (clock() - started)
            if not (firewall or role) or left <= delay:
                if (firewall or role) and attempts > 1:
                    log.warning("%s: still refused (%s) after %d attempts in %.0f s", what,
                                "storage firewall" if firewall else "no data role", attempts, clock() - started)
                raise
            if firewall:
                log.info("%s: 403 AuthorizationFailure (attempt %d); a new firewall rule may still be "
                         "propagating, retrying for up to %.0f s more", what, attempts, left)
            else:
                log.info("%s: 403 AuthorizationPermissionMismatch (attempt %d); a new role assignment may still be"
                         " propagating, retrying for up to %.0f s more", what, attempts, left)
            sleep(delay)
            delay = min(delay * 2, 4.0)


def _is_refusal(exc: BaseException, code: str) -> bool:
    from cicd_tools.support.azerrors import error_code_of
    from cicd_tools.support.errors import PermissionMissing

    if code == "AuthorizationPermissionMismatch" and isinstance(exc, PermissionMissing):
        return True
    return error_code_of(exc) == code
