"""Thread-safe in-memory state of the sandbox cloud: accounts, rule clocks, role assignments, faults.

Every emulator reads and writes through one ``CloudState`` under one lock, so a PATCH, a firewall
check and a control call never see half an update. Times are monotonic (``clock``), injected so
unit tests can move time without sleeping. What the cloud starts as is in ``sandbox/layout.py``.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cicd_tools.sandbox.layout import (
    ROLE_DEFINITIONS,
    Account,
    RoleAssignment,
    SandboxLayout,
    initial_accounts,
    initial_assignments,
    resolve_principal,
    role_allows,
    scope_covers,
)
from cicd_tools.sandbox.storage.propagation import Propagation, covers


def utc_now_iso() -> str:
    """Now, as ARM writes ``createdOn`` (ISO 8601, UTC)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rule_key(value: str) -> str:
    """The normalised form of an IP rule value, so '1.2.3.4' and '1.2.3.4/32' share one clock."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        return value.strip()


@dataclass
class Fault:
    """A fault armed on matching requests: ``kind`` status | drop | delay; ``count`` None = until cleared."""

    id: str
    service: str  # arm | blob | identity | echo | * (any)
    path: str  # regex searched in the request target (path and query)
    method: str | None = None
    kind: str = "status"
    status: int = 503
    retry_after: float | None = None
    code: str | None = None
    message: str | None = None
    delay: float = 0.0
    count: int | None = 1
    hits: int = 0

    def matches(self, service: str, method: str, target: str) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.service not in ("*", service):
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return re.search(self.path, target) is not None


class CloudState:
    """Everything the emulators share, behind one lock."""

    def __init__(
        self,
        layout: SandboxLayout,
        *,
        propagation_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.layout = layout
        self.clock = clock
        self._initial_delay = propagation_delay
        self._lock = threading.RLock()
        self._requests: deque[dict[str, Any]] = deque(maxlen=2000)
        self.reset()

    def reset(self) -> None:
        """Back to the pre-provisioned cloud: accounts, roles, delay; faults and request log cleared."""
        with self._lock:
            self.propagation = Propagation(delay=self._initial_delay)
            self._rng = random.Random()
            self._accounts = initial_accounts(self.layout)
            self._assignments = initial_assignments(self.layout)
            # RBAC propagation clocks: when an assignment was added (pre-provisioned ones have none: in effect)
            # and when one was removed (it keeps granting for Propagation.role_removal_delay).
            self._role_added: dict[tuple[str, str, str], float] = {}
            self._role_removed: list[tuple[RoleAssignment, float]] = []
            self._faults: list[Fault] = []
            self._requests.clear()

    # -- accounts -----------------------------------------------------------------------------------
    def account_names(self) -> list[str]:
        with self._lock:
            return list(self._accounts)

    def has_account(self, name: str) -> bool:
        with self._lock:
            return name in self._accounts

    def account(self, name: str) -> Account:
        """A deep copy of the account. Raises: KeyError."""
        with self._lock:
            return copy.deepcopy(self._accounts[name])

    def update_account(
        self,
        name: str,
        *,
        network_acls: Mapping[str, Any] | None = None,
        allow_shared_key_access: bool | object | None = ...,
        public_network_access: str | None = None,
        tags: Mapping[str, str] | None = None,
        propagated: bool = False,
    ) -> Account:
        """Apply a PATCH: each ``networkAcls`` field given replaces the stored one; ``tags`` replace all.

        ``propagated`` back-dates new rule clocks so the rules are in effect at once (test set-up).
        Raises: KeyError.
        """
        with self._lock:
            acc = self._accounts[name]
            if network_acls is not None:
                old_action = acc.network_acls.get("defaultAction", "Allow")
                if network_acls.get("defaultAction", old_action) != old_action:
                    acc.previous_default_action = old_action
                    acc.default_action_since = -float("inf") if propagated else self.clock()
                for key, value in network_acls.items():
                    acc.network_acls[key] = copy.deepcopy(value)
                if "ipRules" in network_acls:
                    self._restart_clocks(acc, propagated=propagated)
            if allow_shared_key_access is not ...:
                acc.allow_shared_key_access = allow_shared_key_access  # type: ignore[assignment]
            if public_network_access is not None:
                acc.public_network_access = public_network_access
            if tags is not None:
                acc.tags = dict(tags)
            return copy.deepcopy(acc)

    def _restart_clocks(self, acc: Account, *, propagated: bool) -> None:
        # A rule value keeps its clock while present; one that disappears and comes back starts again.
        p = self.propagation
        now = self.clock() - ((p.delay + p.flap_window) if propagated else 0.0)
        keys = {rule_key(str(r.get("value", ""))) for r in acc.network_acls.get("ipRules") or []}
        for gone in set(acc.rule_since) - keys:
            acc.rule_removed[gone] = -float("inf") if propagated else self.clock()
        for back in keys:
            acc.rule_removed.pop(back, None)
        acc.rule_since = {k: acc.rule_since.get(k, now) for k in keys}
        if propagated:
            acc.rule_since = dict.fromkeys(keys, now)

    def rule_ages(self, name: str) -> dict[str, float]:
        """Seconds since each IP rule value appeared."""
        with self._lock:
            now = self.clock()
            return {k: round(now - t, 3) for k, t in self._accounts[name].rule_since.items()}

    def network_allows(self, name: str, source_ip: str, *, private_endpoint: bool) -> bool:
        """The storage firewall's verdict for a request from ``source_ip`` (or the private endpoint)."""
        if private_endpoint:
            return True  # a private endpoint is not subject to public network rules
        with self._lock:
            acc = self._accounts[name]
            if acc.public_network_access != "Enabled":
                return False
            now, p = self.clock(), self.propagation
            action = acc.network_acls.get("defaultAction", "Allow")
            if now - acc.default_action_since < p.default_action_delay:
                action = acc.previous_default_action
            if action == "Allow":
                return True
            address = ipaddress.ip_address(source_ip)
            for key, since in acc.rule_since.items():
                age = now - since
                if age < p.delay or not covers(key, address):
                    continue
                if age < p.delay + p.flap_window and self._rng.random() < p.flap_refuse:
                    continue  # this front end has not got the rule yet (or lost it again)
                return True
            return any(now - gone < p.removal_delay and covers(key, address) for key, gone in acc.rule_removed.items())

    @property
    def propagation_delay(self) -> float:
        return self.propagation.delay

    def set_propagation(self, **changes: Any) -> Propagation:
        """Change how rules propagate (``Propagation`` field names). Raises: ValueError, TypeError."""
        with self._lock:
            merged = {**asdict(self.propagation), **changes}
            updated = Propagation(**merged)
            if min(updated.times()) < 0 or not 0 <= updated.flap_refuse <= 1:
                raise ValueError("propagation times must be >= 0 and flapRefuseRatio within 0..1")
            self.propagation = updated
            self._rng = random.Random(updated.seed)
            return updated

    # -- roles ---------------------------------------------------------------------------------------
    def assignments(self) -> list[RoleAssignment]:
        with self._lock:
            return list(self._assignments)

    def assign_role(
        self, principal: str, role: str, scope: str, *, created_on: str | None = None
    ) -> RoleAssignment:
        """Add an assignment (idempotent), created now unless ``created_on`` says otherwise.

        Raises: ValueError for an unknown role.
        """
        if role not in ROLE_DEFINITIONS:
            raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLE_DEFINITIONS)}")
        item = RoleAssignment(principal, resolve_principal(principal), role, scope, created_on or utc_now_iso())
        with self._lock:
            if not any(self._same(a, item) for a in self._assignments):
                self._assignments.append(item)
                if created_on is None:  # a back-dated assignment (test set-up) is in effect at once
                    self._role_added[self._key(item)] = self.clock()
        return item

    @staticmethod
    def _key(a: RoleAssignment) -> tuple[str, str, str]:
        return a.principal_id, a.role, a.scope.lower()

    @classmethod
    def _same(cls, a: RoleAssignment, b: RoleAssignment) -> bool:
        return cls._key(a) == cls._key(b)

    def remove_role(self, principal: str, role: str, scope: str | None = None) -> int:
        """Remove matching assignments (every scope when ``scope`` is None); returns how many."""
        pid = resolve_principal(principal)
        with self._lock:
            keep = [
                a for a in self._assignments
                if not (a.principal_id == pid and a.role == role
                        and (scope is None or a.scope.lower() == scope.lower()))
            ]
            now = self.clock()
            for gone in self._assignments:
                if gone not in keep:
                    self._role_removed.append((gone, now))
                    self._role_added.pop(self._key(gone), None)
            removed = len(self._assignments) - len(keep)
            self._assignments = keep
            return removed

    def authorize(self, principal_id: str, resource_id: str, action: str, *, data: bool = False) -> bool:
        """Whether any role of ``principal_id`` at a scope covering ``resource_id`` grants ``action``, as far as
        the change has propagated (``Propagation.role_delay`` / ``role_removal_delay``)."""
        def grants(a: RoleAssignment) -> bool:
            return (a.principal_id == principal_id and scope_covers(a.scope, resource_id)
                    and role_allows(a.role, action, data=data))

        with self._lock:
            now, p = self.clock(), self.propagation
            if any(grants(a) and now - self._role_added.get(self._key(a), -float("inf")) >= p.role_delay
                   for a in self._assignments):
                return True
            return any(now - gone < p.role_removal_delay and grants(a) for a, gone in self._role_removed)

    # -- faults --------------------------------------------------------------------------------------
    def add_fault(self, **spec: Any) -> Fault:
        """Arm a fault. Raises: ValueError for a bad kind or regex."""
        fault = Fault(id=uuid.uuid4().hex[:12], **spec)
        if fault.kind not in ("status", "drop", "delay"):
            raise ValueError(f"unknown fault kind {fault.kind!r} (status, drop, delay)")
        re.compile(fault.path)
        with self._lock:
            self._faults.append(fault)
        return copy.copy(fault)

    def take_fault(self, service: str, method: str, target: str) -> Fault | None:
        """The first armed fault matching this request, counted as hit."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(service, method, target):
                    fault.hits += 1
                    if fault.count is not None:
                        fault.count -= 1
                    return copy.copy(fault)
        return None

    def faults(self) -> list[Fault]:
        with self._lock:
            return [copy.copy(f) for f in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []

    # -- request log ---------------------------------------------------------------------------------
    def record(self, **entry: Any) -> None:
        with self._lock:
            self._requests.append(entry)

    def requests(self, service: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._requests if service is None or e.get("service") == service]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- snapshots -----------------------------------------------------------------------------------
    def set_propagation_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the propagation delay cannot be negative")
        self.set_propagation(delay=float(seconds))


def assignments_json(items: Iterable[RoleAssignment]) -> list[dict[str, Any]]:
    return [asdict(a) for a in items]


def fault_json(fault: Fault) -> dict[str, Any]:
    data = asdict(fault)
    data["remaining"] = data.pop("count")
    return data
