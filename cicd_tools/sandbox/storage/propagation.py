"""How the storage firewall's data plane catches up with ARM (AZURE_FACTS.md §4: not monotonic)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any


@dataclass
class Propagation:
    """How the storage firewall's data plane catches up with ARM (AZURE_FACTS.md §4: not monotonic).

    A new rule refuses for ``delay`` s, then for ``flap_window`` s admits or refuses each request at
    random (``flap_refuse`` is the refusal ratio: front ends that have the rule and some that do not),
    then admits. A removed rule keeps admitting for ``removal_delay`` s; a ``defaultAction`` change
    takes effect after ``default_action_delay`` s.

    Role assignments lag too (Azure RBAC: changes can take up to 10 minutes to take effect, docs/sandbox.md):
    a new assignment grants nothing for ``role_delay`` s, a removed one keeps granting for
    ``role_removal_delay`` s. Both default to 0 (at once), as tests want; ``slow-propagation`` sets minutes.
    """

    delay: float = 5.0
    flap_window: float = 0.0
    flap_refuse: float = 0.5
    removal_delay: float = 0.0
    default_action_delay: float = 0.0
    seed: int | None = None
    role_delay: float = 0.0
    role_removal_delay: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"delay": self.delay, "flapWindow": self.flap_window, "flapRefuseRatio": self.flap_refuse,
                "removalDelay": self.removal_delay, "defaultActionDelay": self.default_action_delay,
                "seed": self.seed, "roleDelay": self.role_delay, "roleRemovalDelay": self.role_removal_delay}

    def times(self) -> tuple[float, ...]:
        """Every duration field (each must be >= 0)."""
        return (self.delay, self.flap_window, self.removal_delay, self.default_action_delay, self.role_delay,
                self.role_removal_delay)


def covers(key: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return address in ipaddress.ip_network(key, strict=False)
    except ValueError:
        return False
