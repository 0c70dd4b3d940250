"""Run the links in chain order and assemble the report (reads only: the reader has no other verb)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from cicd_tools.preflight import aks, ci_identity, compute, factory, freshness, storage
from cicd_tools.preflight.arm import ArmReader
from cicd_tools.preflight.context import Context, Targets
from cicd_tools.preflight.model import LinkResult, PreflightReport

log = logging.getLogger(__name__)

LINKS: tuple[str, ...] = ("ci-identity", "factory", "storage", "compute", "aks", "rbac-freshness")


def run_preflight(
    reader: ArmReader,
    targets: Targets,
    principal: dict[str, str],
    *,
    skip: tuple[str, ...] = (),
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PreflightReport:
    """Check every link not in ``skip`` (``factory`` is skipped when no factory is configured).

    Raises: the reader's AuthenticationFailed / Throttled / AzureError when ARM cannot be asked at all.
    """
    unknown = set(skip) - set(LINKS)
    if unknown:
        raise ValueError(f"unknown links: {', '.join(sorted(unknown))}")
    skipped = tuple(link for link in LINKS if link in skip or (link == "factory" and not targets.factory))
    ctx = Context(reader, targets, now())
    checks: dict[str, Callable[[], LinkResult]] = {
        "ci-identity": lambda: ci_identity.check(ctx, principal),
        "factory": lambda: factory.check(ctx),
        "storage": lambda: storage.check(ctx),
        "compute": lambda: compute.check(ctx),
        "aks": lambda: aks.check(ctx),
        "rbac-freshness": lambda: freshness.check(ctx),  # last: it reads the grants the others used
    }
    results = []
    for link in LINKS:
        if link in skipped:
            continue
        log.info("preflight: checking %s", link)
        results.append(checks[link]())
    return PreflightReport(tuple(results), principal, skipped)
