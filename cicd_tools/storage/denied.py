"""Retrying 403 AuthorizationFailure briefly: right after ``firewall open`` a new rule can still flap.

AZURE_FACTS.md §4: a new rule can admit, refuse, then admit again for a while, so one refusal right after
the rule was proven reachable is not yet a verdict. ``smoke`` and ``code register`` retry it within a short
budget and log every retry; any other error passes at once.
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


def default_budget() -> float:
    """``CICD_DENIED_BUDGET`` when set (a duration: 10s, 1m, 0), else 30 s. Raises: UsageError when malformed."""
    import os

    text = os.environ.get(DENIED_BUDGET_ENV, "").strip()
    if not text:
        return DENIED_BUDGET
    if text in ("0", "0s"):
        return 0.0
    from cicd_tools.storage.leases import parse_duration

    return parse_duration(text)


def retry_while_denied(
    fn: Callable[[], T],
    what: str,
    *,
    budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``fn()``, retried while the storage firewall answers 403 AuthorizationFailure, for ``budget`` seconds.

    Right after ``firewall open`` a rule can still flap (AZURE_FACTS.md §4: it admits, refuses, admits
    again), so one refusal is not yet a verdict. Each retry is logged; other errors pass at once.
    ``budget`` None: ``default_budget()``.
    Raises: whatever ``fn`` raised last.
    """
    if budget is None:
        budget = default_budget()
    started, delay, attempts = clock(), 0.5, 0
    while True:
        try:
            return fn()
        except Exception as exc:
            attempts += 1
            denied = isinstance(exc, NetworkDenied) or _is_firewall_refusal(exc)
            left = budget - (clock() - started)
            if not denied or left <= delay:
                if denied and attempts > 1:
                    log.warning("%s: still refused by the storage firewall after %d attempts in %.0f s",
                                what, attempts, clock() - started)
                raise
            log.info("%s: 403 AuthorizationFailure (attempt %d); a new firewall rule may still be propagating,"
                     " retrying for up to %.0f s more", what, attempts, left)
            sleep(delay)
            delay = min(delay * 2, 4.0)


def _is_firewall_refusal(exc: BaseException) -> bool:
    from cicd_tools.support.azerrors import error_code_of

    return error_code_of(exc) == "AuthorizationFailure"
