"""A firewall lease as a storage-account tag: its format, parsing, lease ids and lifetimes.

A lease is a tag ``cicd-fw-<leaseId>`` = ``<ip>|<expiry ISO>|<preexisting 0|1>``, plus ``|<renew-by ISO>`` when a
guard holds it (the guard renews it every minute; a lease whose renew-by passed is dead even before its expiry).
What to PATCH for a lease, and the run's state file, are in ``leases.py``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cicd_tools.support.errors import UsageError

log = logging.getLogger(__name__)

TAG_PREFIX = "cicd-fw-"
MAX_TAGS = 50  # per resource (AZURE_FACTS.md §4)
MAX_TAG_NAME = 512
MAX_TAG_VALUE = 256
MAX_IP_RULES = 400
_LEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Lease:
    """One run's hold on an IP rule."""

    lease_id: str
    ip: str
    expires_at: datetime
    preexisting: bool  # the rule existed (and was not merely another lease's) before this lease opened
    renew_by: datetime | None = None  # a guarded lease dies when its guard stops renewing it

    @property
    def tag_name(self) -> str:
        return TAG_PREFIX + self.lease_id

    @property
    def tag_value(self) -> str:
        value = f"{self.ip}|{iso(self.expires_at)}|{1 if self.preexisting else 0}"
        return value if self.renew_by is None else f"{value}|{iso(self.renew_by)}"

    def is_live(self, now: datetime) -> bool:
        return self.expires_at > now and (self.renew_by is None or self.renew_by > now)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a ``Z`` and whole seconds."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Parse what ``iso`` writes (and any offset-aware ISO form). Raises: ValueError."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``2h``, ``1d``. Raises: UsageError."""
    match = _DURATION.match(str(text))
    if match and float(match.group(1)) <= 0:  # a duration, but none: waiting 0 s cannot succeed
        raise UsageError(f"{text!r} is zero: a timeout or lifetime must be longer than 0 s.",
                         hint="Give a positive duration, e.g. 90s, 30m, 2h.")
    if not match:
        raise UsageError(f"{text!r} is not a duration.", hint="Use seconds or a suffix: 90s, 30m, 2h, 1d.")
    return float(match.group(1)) * _UNITS[match.group(2)]


def validate_lease_id(lease_id: str) -> str:
    """The lease id if it can be part of a tag name. Raises: UsageError."""
    if not _LEASE_ID.match(lease_id):
        raise UsageError(
            f"lease id {lease_id!r} is not usable in a tag name.",
            hint="Use 1-80 characters of letters, digits, '.', '_' and '-', starting with a letter or digit.",
        )
    return lease_id


def default_lease_id(environ: Mapping[str, str]) -> str:
    """One lease per CI job: parallel jobs of one run must not share (and so close) each other's lease.

    Azure DevOps: ``BUILD_BUILDID`` + ``SYSTEM_JOBID``; GitHub: ``GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT`` +
    ``GITHUB_JOB`` (matrix legs share ``GITHUB_JOB``: give them ``--lease-id`` of their own).
    """
    if environ.get("BUILD_BUILDID"):
        job = environ.get("SYSTEM_JOBID")
        return validate_lease_id(f"ado-{environ['BUILD_BUILDID']}" + (f"-{job}" if job else ""))
    if environ.get("GITHUB_RUN_ID"):
        job = environ.get("GITHUB_JOB")
        run = f"gh-{environ['GITHUB_RUN_ID']}-{environ.get('GITHUB_RUN_ATTEMPT') or '1'}"
        return validate_lease_id(run + (f"-{job}" if job else ""))
    return f"local-{secrets.token_hex(6)}"


def parse_lease_tag(name: str, value: str) -> Lease | None:
    """The lease a tag records, or None when the tag is not a (well-formed) lease."""
    if not name.startswith(TAG_PREFIX):
        return None
    parts = value.split("|")
    try:
        if len(parts) not in (3, 4) or parts[2] not in ("0", "1"):
            raise ValueError("expected ip|expiry|0 or 1[|renew-by]")
        ip = str(ipaddress.ip_address(parts[0]))
        renew_by = parse_iso(parts[3]) if len(parts) == 4 else None
        return Lease(name[len(TAG_PREFIX) :], ip, parse_iso(parts[1]), parts[2] == "1", renew_by)
    except ValueError as exc:
        log.warning("ignoring malformed firewall lease tag %s=%r (%s)", name, value, exc)
        return None


def leases_in(tags: Mapping[str, str] | None) -> list[Lease]:
    """Every well-formed lease recorded in an account's tags."""
    found = (parse_lease_tag(k, v) for k, v in (tags or {}).items())
    return [lease for lease in found if lease is not None]
