"""``storage diagnose`` and ``firewall sweep`` as operations: typed requests in, typed results out.

No argparse and no printing: the CLI (``cli/storage.py``, ``cli/firewall.py``) renders the results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cicd_tools.settings.resolve import Settings
from cicd_tools.storage.mgmt import account_ref, mgmt_client
from cicd_tools.storage.smoke import Diagnosis
from cicd_tools.storage.sweep import SweepResult

DIAGNOSE_TIMEOUT = 60.0


@dataclass(frozen=True)
class AccountDiagnosed:
    """The account's settings read once, and what in them will bite CI."""

    account: str
    diagnosis: Diagnosis


def diagnose_account(settings: Settings, *, client: Any | None = None,
                     now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> AccountDiagnosed:
    """Read the account over ARM (read only) and diagnose it. Raises: ConfigError, AzureError."""
    from cicd_tools.storage.arm import ArmOperation, RetrySettings, Runtime, accounts_api
    from cicd_tools.storage.smoke import diagnose

    ref = account_ref(settings)
    account: dict[str, Any] = ArmOperation(
        accounts_api(client or mgmt_client(settings)), ref, DIAGNOSE_TIMEOUT, RetrySettings(), Runtime()
    ).get()
    return AccountDiagnosed(ref.name, diagnose(account, now()))


@dataclass(frozen=True)
class SweepRequest:
    settings: Settings
    timeout: float = 120.0


@dataclass(frozen=True)
class FirewallSwept:
    account: str
    result: SweepResult


def sweep_firewall(request: SweepRequest, *, client: Any | None = None) -> FirewallSwept:
    """Remove expired leases and the rules only they held. Raises: ConfigError, AzureError, OperationTimeout."""
    from cicd_tools.storage.sweep import sweep

    ref = account_ref(request.settings)
    result = sweep(client or mgmt_client(request.settings), ref, timeout=request.timeout)
    return FirewallSwept(ref.name, result)
