"""Typed results of a preflight: one ``LinkResult`` per link of the chain, each made of named ``Check``s.

A link is ok, warn or fail: the worst of its checks. The report names a root cause: the first failing
check in ``ROOT_CAUSE_ORDER``, upstream first (a fixed-at-creation workspace setting before a cluster
flag, a cluster flag before the identity settings it makes possible, those before role assignments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]
_RANK: dict[Status, int] = {"ok": 0, "warn": 1, "fail": 2}

# Check ids in the order that makes the first failing one the root cause: what is fixed at creation, then what
# the rest hangs on (the workspace and compute exist, the cluster can issue tokens), then identities, then roles.
ROOT_CAUSE_ORDER: tuple[str, ...] = (
    "workspace-datastore-auth",
    "workspace",
    "compute",
    "aks-cluster",
    "aks-workload-identity",
    "aks-extension",
    "aks-extension-identity",
    "aks-identity",
    "aks-federated-credentials",
    "aks-identity-data-role",
    "compute-identity",
    "compute-identity-data-role",
    "compute-instance-types",
    "pointer-account",
    "factory",
    "factory-managed-ir",
    "factory-private-endpoint",
    "factory-connect-via",
    "factory-blob-read",
    "factory-workspace-jobs",
    "ci-storage-write",
    "ci-blob-data",
    "ci-workspace",
    "ci-factory",
)


def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default="ok")


@dataclass(frozen=True)
class Check:
    """One fact checked: what was found (``evidence``) and, unless ok, the exact fix."""

    id: str
    status: Status
    evidence: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "evidence": self.evidence, "fix": self.fix}


def ok(check_id: str, evidence: str) -> Check:
    return Check(check_id, "ok", evidence)


def warn(check_id: str, evidence: str, fix: str | None = None) -> Check:
    return Check(check_id, "warn", evidence, fix)


def fail(check_id: str, evidence: str, fix: str) -> Check:
    return Check(check_id, "fail", evidence, fix)


@dataclass(frozen=True)
class LinkResult:
    """One link of the chain: its status (the worst check), evidence lines and the fixes of what is not ok."""

    link: str
    title: str
    checks: tuple[Check, ...]

    @property
    def status(self) -> Status:
        return worst(tuple(c.status for c in self.checks))

    @property
    def evidence(self) -> tuple[str, ...]:
        return tuple(c.evidence for c in self.checks)

    @property
    def fix(self) -> str | None:
        fixes = [c.fix for c in self.checks if c.status != "ok" and c.fix]
        return "\n".join(fixes) if fixes else None

    def to_dict(self) -> dict[str, Any]:
        return {"link": self.link, "title": self.title, "status": self.status, "fix": self.fix,
                "checks": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True)
class RootCause:
    link: str
    check: Check

    def to_dict(self) -> dict[str, Any]:
        return {"link": self.link, **self.check.to_dict()}


@dataclass(frozen=True)
class PreflightReport:
    """Every link, who the CI identity is, and the root cause when something fails."""

    links: tuple[LinkResult, ...]
    principal: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        return worst(tuple(link.status for link in self.links))

    @property
    def root_cause(self) -> RootCause | None:
        failing = [(link.link, c) for link in self.links for c in link.checks if c.status == "fail"]
        if not failing:
            return None
        order = {cid: i for i, cid in enumerate(ROOT_CAUSE_ORDER)}
        link, check = min(failing, key=lambda lc: order.get(lc[1].id, len(order)))
        return RootCause(link, check)

    def link(self, name: str) -> LinkResult:
        """A link by name. Raises: KeyError."""
        for item in self.links:
            if item.link == name:
                return item
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        cause = self.root_cause
        return {
            "status": self.status,
            "rootCause": cause.to_dict() if cause else None,
            "principal": dict(self.principal),
            "skipped": list(self.skipped),
            "links": [link.to_dict() for link in self.links],
        }
