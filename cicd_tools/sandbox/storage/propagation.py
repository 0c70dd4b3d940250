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
    """

    delay: float = 5.0
    flap_window: float = 0.0
    flap_refuse: float = 0.5
    removal_delay: float = 0.0
    default_action_delay: float = 0.0
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"delay": self.delay, "flapWindow": self.flap_window, "flapRefuseRatio": self.flap_refuse,
                "removalDelay": self.removal_delay, "defaultActionDelay": self.default_action_delay,
                "seed": self.seed}


def covers(key: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return address in ipaddress.ip_network(key, strict=False)
    except ValueError:
        return False
