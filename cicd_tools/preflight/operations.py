"""``preflight`` as an operation: the targets in, the report of every link out (read only; no argparse, no
printing). The CLI (``cli/preflight.py``) resolves the targets from its flags and renders the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cicd_tools.preflight.arm import ArmReader
from cicd_tools.preflight.context import Targets
from cicd_tools.preflight.model import PreflightReport


class PrincipalReader(ArmReader, Protocol):
    """An ``ArmReader`` that also says who reads (the token's principal)."""

    def principal(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class PreflightRequest:
    targets: Targets
    arm_endpoint: str = "https://management.azure.com"
    skip: tuple[str, ...] = ()  # links not to check (runner.LINKS)


@dataclass(frozen=True)
class PreflightResult:
    report: PreflightReport
    elapsed: float  # seconds, the principal's lookup included

    @property
    def failed(self) -> bool:
        return self.report.status == "fail"


def run_checks(request: PreflightRequest, *, credential: Any | None = None, reader: PrincipalReader | None = None,
               clock: Callable[[], float] = time.monotonic) -> PreflightResult:
    """Read each link of the chain as the credential's principal. Raises: AuthenticationFailed, AzureError
    (ARM could not be asked at all); a link that fails is a verdict in the report, not an exception."""
    from cicd_tools.preflight.runner import run_preflight

    started = clock()
    owned = reader is None
    if reader is None:
        from cicd_tools.credentials import build_credential
        from cicd_tools.preflight.arm import PipelineArmReader

        reader = PipelineArmReader(credential or build_credential(), request.arm_endpoint)
    try:
        principal = reader.principal()
        report = run_preflight(reader, request.targets, principal, skip=request.skip)
    finally:
        if owned:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
    return PreflightResult(report, round(clock() - started, 3))
