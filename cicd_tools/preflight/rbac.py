"""Role assignments as ARM evaluates them: every assignment at or above a resource, its role's permissions.

``assignedTo('{principalId}')`` returns the principal's assignments *and* those of the groups it belongs to
(at, above and below the scope, management groups included); dropping those below the resource gives what
applies. A
permission is granted when an ``actions`` (or ``dataActions``) pattern matches and no ``notActions``
pattern does. Every grant found is remembered with its ``createdOn``, so the freshness link can warn about
an assignment younger than ARM's propagation time.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cicd_tools.preflight.arm import ArmReader, ArmReadError

API_VERSION = "2022-04-01"
AUTHZ = "/providers/Microsoft.Authorization"
BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
BLOB_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"


@dataclass(frozen=True)
class Grant:
    """An assignment that grants what was asked: which role, where, since when, and whether through a group."""

    role: str
    scope: str
    principal_id: str
    created_on: str | None
    via_group: bool

    def describe(self) -> str:
        group = f" through group {self.principal_id}" if self.via_group else ""
        created = f", created {self.created_on}" if self.created_on else ""
        return f"'{self.role}' at {self.scope}{group}{created}"


@dataclass(frozen=True)
class Verdict:
    """Whether ``action`` is granted; the grants that do it; the assignments' roles seen; why it cannot tell."""

    granted: bool
    grants: tuple[Grant, ...] = ()
    roles_seen: tuple[str, ...] = ()
    unknown: str | None = None  # set when the assignments or a definition could not be read


def applies(scope: str, resource_id: str) -> bool:
    """Whether an assignment ARM listed for ``resource_id`` applies to it: at or above, not below it.

    "Above" includes management groups and the root ``/``, whose ids are not prefixes of the resource's.
    """
    outer, inner = scope.rstrip("/").lower(), resource_id.rstrip("/").lower()
    return not (outer.startswith(inner + "/"))


def _matches(patterns: list[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in patterns)


def permits(permissions: list[dict[str, Any]], action: str, *, data: bool) -> bool:
    """Whether a role definition's ``permissions`` grant ``action`` (a data action when ``data``)."""
    allow, deny = ("dataActions", "notDataActions") if data else ("actions", "notActions")
    return any(_matches(list(p.get(allow) or []), action) and not _matches(list(p.get(deny) or []), action)
               for p in permissions)


@dataclass
class Rbac:
    """Reads and caches assignments and role definitions; remembers every grant used."""

    reader: ArmReader
    used: list[Grant] = field(default_factory=list)
    _assignments: dict[tuple[str, str], list[dict[str, Any]] | ArmReadError] = field(default_factory=dict)
    _definitions: dict[str, dict[str, Any] | ArmReadError] = field(default_factory=dict)

    def assignments(self, principal_id: str, resource_id: str) -> list[dict[str, Any]]:
        """Assignments of the principal (and its groups) that apply to ``resource_id``. Raises: ArmReadError."""
        key = (principal_id.lower(), resource_id.lower())
        if key not in self._assignments:
            try:
                items = self.reader.list(f"{resource_id}{AUTHZ}/roleAssignments", API_VERSION,
                                         **{"$filter": f"assignedTo('{principal_id}')"})
                self._assignments[key] = [
                    a for a in items if applies(str((a.get("properties") or {}).get("scope", "")), resource_id)]
            except ArmReadError as err:
                self._assignments[key] = err
        found = self._assignments[key]
        if isinstance(found, ArmReadError):
            raise found
        return found

    def definition(self, definition_id: str) -> dict[str, Any]:
        """A role definition's properties. Raises: ArmReadError."""
        key = definition_id.lower()
        if key not in self._definitions:
            try:
                self._definitions[key] = self.reader.get(definition_id, API_VERSION).get("properties") or {}
            except ArmReadError as err:
                self._definitions[key] = err
        found = self._definitions[key]
        if isinstance(found, ArmReadError):
            raise found
        return found

    def check(self, principal_id: str, resource_id: str, actions: tuple[str, ...], *, data: bool) -> Verdict:
        """Whether the principal holds every one of ``actions`` on ``resource_id``."""
        try:
            assignments = self.assignments(principal_id, resource_id)
        except ArmReadError as err:
            return Verdict(False, unknown=f"cannot read role assignments at {resource_id} ({err.summary}: "
                           f"{err.message})")
        grants: list[Grant] = []
        roles: list[str] = []
        unknown: str | None = None
        missing = list(actions)
        for item in assignments:
            props = item.get("properties") or {}
            try:
                definition = self.definition(str(props.get("roleDefinitionId", "")))
            except ArmReadError as err:
                unknown = f"cannot read role definition {props.get('roleDefinitionId')} ({err.summary})"
                continue
            role = str(definition.get("roleName") or props.get("roleDefinitionId"))
            roles.append(role)
            permissions = list(definition.get("permissions") or [])
            hits = [a for a in missing if permits(permissions, a, data=data)]
            if hits:
                pid = str(props.get("principalId", ""))
                grants.append(Grant(role, str(props.get("scope", "")), pid, props.get("createdOn"),
                                    via_group=pid.lower() != principal_id.lower()))
                missing = [a for a in missing if a not in hits]
        granted = not missing
        if granted:
            self.used.extend(grants)
        return Verdict(granted, tuple(grants), tuple(dict.fromkeys(roles)), None if granted else unknown)


def parse_time(value: str | None) -> datetime | None:
    """ARM's ISO 8601 timestamps (with Z and up to 7 fraction digits) as aware datetimes."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        digits = tail[:len(tail) - len(tail.lstrip("0123456789"))]
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
