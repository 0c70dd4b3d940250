"""Firewall leases: who holds which temporary IP rule until when, recorded where it survives a crash.

A lease lives as an account tag (its format: ``lease_tags.py``) next to the rule it explains, so any later run
(``firewall sweep``) can tell an abandoned temporary rule from a permanent one; a tag a stale PATCH brought back
after close, or a crashed job's lease, is swept once its guard stops renewing it instead of at the TTL. The
planning functions here are pure: account JSON in, the new ``networkAcls`` and ``tags`` out (or ``None`` when
nothing needs to change). The run's own record is the state file, written before the PATCH.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cicd_tools.storage.lease_tags import (
    MAX_IP_RULES,
    MAX_TAG_NAME,
    MAX_TAG_VALUE,
    MAX_TAGS,
    TAG_PREFIX,
    Lease,
    iso,
    leases_in,
    parse_iso,
    parse_lease_tag,
)
from cicd_tools.support.errors import AzureError, UsageError

log = logging.getLogger(__name__)


class LeaseConflict(UsageError):
    """Another live lease with the same id holds a different IP."""

    default_hint = (
        "Give parallel jobs distinct lease ids: --lease-id $(System.JobId) on Azure DevOps,"
        " --lease-id ${{ github.job }}-${{ strategy.job-index }} on GitHub Actions."
    )


class TagBudgetExhausted(AzureError):
    """The account has no room for another lease tag (or another IP rule)."""

    default_hint = (
        "Run `cicd-tools firewall sweep` to remove expired leases, or remove unused tags / IP rules on the account."
    )





# --- account JSON helpers -------------------------------------------------------------------------


def network_acls(account: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``properties.networkAcls`` exactly as returned (every field kept)."""
    props = account.get("properties") or {}
    return copy.deepcopy(dict(props.get("networkAcls") or {}))


def account_tags(account: Mapping[str, Any]) -> dict[str, str]:
    return dict(account.get("tags") or {})


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def rule_index(acls: Mapping[str, Any], ip: str) -> int | None:
    """Index of the single-address rule for ``ip`` (``1.2.3.4`` or ``1.2.3.4/32``), if any."""
    wanted = ipaddress.ip_network(ip)
    for i, rule in enumerate(acls.get("ipRules") or []):
        if _network(str(rule.get("value", ""))) == wanted:
            return i
    return None


def covering_rule(acls: Mapping[str, Any], ip: str) -> str | None:
    """The value of a wider CIDR rule that already admits ``ip``, if any."""
    address = ipaddress.ip_address(ip)
    for rule in acls.get("ipRules") or []:
        net = _network(str(rule.get("value", "")))
        if net is not None and net.num_addresses > 1 and address in net:
            return str(rule.get("value"))
    return None


# --- plans: what to PATCH, or None when the account already says what we want ---------------------


@dataclass(frozen=True)
class Change:
    """The two fields a PATCH sends: the whole ``networkAcls`` and the whole tag map."""

    network_acls: dict[str, Any]
    tags: dict[str, str]

    def body(self) -> dict[str, Any]:
        return {"properties": {"networkAcls": self.network_acls}, "tags": self.tags}


def lease_for_open(
    account: Mapping[str, Any],
    lease_id: str,
    ip: str,
    expires_at: datetime,
    now: datetime,
    renew_by: datetime | None = None,
) -> Lease:
    """The lease ``open`` records: ``preexisting`` when the rule stands on its own, not on a live lease.

    Raises: LeaseConflict when a live lease of the same id holds another IP (a sibling job of the run).
    """
    acls = network_acls(account)
    leases = leases_in(account_tags(account))
    for other in leases:
        if other.lease_id == lease_id and other.ip != ip and other.is_live(now):
            raise LeaseConflict(
                f"lease {lease_id} already holds {other.ip} on this account until {iso(other.expires_at)};"
                f" this agent's IP is {ip}. Two jobs of one run share the default lease id.",
                code="LeaseConflict",
            )
    mine = [x for x in leases if x.lease_id == lease_id and x.ip == ip]
    if mine:  # a re-run of the same open keeps what the first run found
        return Lease(lease_id, ip, expires_at, mine[0].preexisting, renew_by)
    if covering_rule(acls, ip) is not None:
        return Lease(lease_id, ip, expires_at, True, renew_by)
    if rule_index(acls, ip) is None:
        return Lease(lease_id, ip, expires_at, False, renew_by)
    holders = [x for x in leases if x.ip == ip]
    # A rule held by other leases is temporary unless every holder found it there: a holder that added it
    # (preexisting 0) is the stronger evidence, and it goes when the last holder closes. A rule no tag
    # explains (a tags-only write may have hidden its lease) is taken as pre-existing; the lease that added
    # it corrects that claim when it closes (``plan_close`` hands the rule over).
    preexisting = not holders or all(x.preexisting for x in holders)
    return Lease(lease_id, ip, expires_at, preexisting, renew_by)


def plan_open(account: Mapping[str, Any], lease: Lease) -> Change | None:
    """Add the lease tag and the IP rule (unless present or covered). Raises: TagBudgetExhausted."""
    acls = network_acls(account)
    tags = account_tags(account)
    need_rule = rule_index(acls, lease.ip) is None and covering_rule(acls, lease.ip) is None
    need_tag = tags.get(lease.tag_name) != lease.tag_value
    if not need_rule and not need_tag:
        return None
    if need_tag:
        if lease.tag_name not in tags and len(tags) >= MAX_TAGS:
            raise TagBudgetExhausted(
                f"the account already has {len(tags)} tags (limit {MAX_TAGS}); no room for the lease tag.",
                code="TagLimitExceeded",
            )
        if len(lease.tag_name) > MAX_TAG_NAME or len(lease.tag_value) > MAX_TAG_VALUE:
            raise UsageError(f"lease tag {lease.tag_name} is too long for Azure tags.")
        tags[lease.tag_name] = lease.tag_value
    if need_rule:
        rules = list(acls.get("ipRules") or [])
        if len(rules) >= MAX_IP_RULES:
            raise TagBudgetExhausted(
                f"the account already has {len(rules)} IP rules (limit {MAX_IP_RULES}).",
                code="IpRuleLimitExceeded",
            )
        rules.append({"value": lease.ip, "action": "Allow"})
        acls["ipRules"] = rules
    return Change(acls, tags)


def rule_is_released(account: Mapping[str, Any], lease: Lease, now: datetime) -> bool:
    """True when ``lease`` is the last live lease holding its rule and the rule was not there before them.

    Pre-existing means every lease on the IP found the rule there: one that added it (preexisting 0)
    overrules the others' claim (they read the rule it had added while a tags-only write hid its tag).
    """
    leases = leases_in(account_tags(account))
    others = [x for x in leases if x.ip == lease.ip and x.lease_id != lease.lease_id]
    if any(x.is_live(now) for x in others):
        return False
    return not all(x.preexisting for x in (lease, *others))


def hand_over(tags: dict[str, str], lease: Lease) -> list[str]:
    """``lease`` added its rule (not pre-existing) and is going: any other lease on the IP that claims the rule
    pre-existed read it after ``lease`` added it (a tags-only write had hidden ``lease``'s tag), so the claim
    is wrong; rewrite it as temporary, so the rule goes when that lease goes. Returns the lease ids corrected."""
    if lease.preexisting:
        return []
    corrected = []
    for other in leases_in(tags):
        if other.ip == lease.ip and other.lease_id != lease.lease_id and other.preexisting:
            tags[other.tag_name] = dataclasses.replace(other, preexisting=False).tag_value
            corrected.append(other.lease_id)
    if corrected:
        log.info("rule %s was added by lease %s, not pre-existing: handed over to lease(s) %s as temporary",
                 lease.ip, lease.lease_id, ", ".join(corrected))
    return corrected


def effective_lease(recorded: Lease | None, fallback: Lease | None) -> Lease | None:
    """The lease to close: the state file's record (authoritative), corrected by a hand-over in its tag."""
    lease = fallback or recorded
    if lease is not None and recorded is not None and recorded.ip == lease.ip and not recorded.preexisting:
        return dataclasses.replace(lease, preexisting=False)
    return lease


def _drop(acls: dict[str, Any], tags: dict[str, str], lease: Lease, now: datetime, account: Mapping[str, Any]) -> None:
    tags.pop(lease.tag_name, None)
    index = rule_index(acls, lease.ip)
    if index is not None and rule_is_released(account, lease, now):
        rules = list(acls.get("ipRules") or [])
        del rules[index]
        acls["ipRules"] = rules
    else:
        hand_over(tags, lease)


def plan_close(account: Mapping[str, Any], lease_id: str, fallback: Lease | None, now: datetime) -> Change | None:
    """Remove our lease tag, and our rule when nothing else holds it.

    ``fallback`` (from the state file) is authoritative when given: it also stands in when the tag never
    landed or was lost to a concurrent write. A tag of the same id naming another IP is a sibling's: kept.
    """
    tags = account_tags(account)
    name = TAG_PREFIX + lease_id
    recorded = parse_lease_tag(name, tags[name]) if name in tags else None
    lease = effective_lease(recorded, fallback)
    if lease is None:
        return None
    acls = network_acls(account)
    new_tags = dict(tags)
    if recorded is not None and recorded.ip == lease.ip:
        del new_tags[name]
    index = rule_index(acls, lease.ip)
    if index is not None and rule_is_released(account, lease, now):
        rules = list(acls.get("ipRules") or [])
        del rules[index]
        acls["ipRules"] = rules
    elif index is not None:
        hand_over(new_tags, lease)  # the rule stays for the others: the last of them removes it
    if new_tags == tags and acls == network_acls(account):
        return None
    return Change(acls, new_tags)


def plan_sweep(account: Mapping[str, Any], now: datetime) -> tuple[Change | None, list[Lease]]:
    """Remove every expired lease and the rules only they held; returns the change and the leases swept."""
    tags = account_tags(account)
    expired = [x for x in leases_in(tags) if not x.is_live(now)]
    if not expired:
        return None, []
    acls = network_acls(account)
    new_tags = dict(tags)
    for lease in expired:
        _drop(acls, new_tags, lease, now, account)
    return Change(acls, new_tags), expired


def lease_expiry(now: datetime, ttl_seconds: float) -> datetime:
    return (now + timedelta(seconds=ttl_seconds)).replace(microsecond=0)


# --- the state file: what this run opened, written before the PATCH so a crash can be cleaned up ----

STATE_FILE_NAME = "firewall-state.json"


def default_state_path(environ: Mapping[str, str], cwd: Path) -> Path:
    """``$AGENT_TEMPDIRECTORY`` (Azure DevOps), ``$RUNNER_TEMP`` (GitHub), else ``./.cicd-tools/``."""
    folder = environ.get("AGENT_TEMPDIRECTORY") or environ.get("RUNNER_TEMP")
    return (Path(folder) if folder else cwd / ".cicd-tools") / STATE_FILE_NAME


@dataclass(frozen=True)
class StateEntry:
    """One account's lease as this run recorded it."""

    account_id: str
    lease_id: str
    ip: str
    expires_at: str
    preexisting: bool | None  # None while unknown (written before the first read finished)
    phase: str  # opening | open | skipped | closed | close-failed

    def lease(self) -> Lease:
        # An unknown preexisting flag means the PATCH may not have landed: treat the rule as ours only if
        # no other live lease holds it (``rule_is_released`` still protects everybody else's).
        return Lease(self.lease_id, self.ip, parse_iso(self.expires_at), bool(self.preexisting))


class StateFile:
    """The JSON file ``open`` writes and ``close`` reads, replaced atomically on every write."""

    def __init__(self, path: Path, *, make_parents: bool = True) -> None:
        self.path = path
        self.make_parents = make_parents
        # Entries missing a field (hand-edited, another tool's), by key: kept on rewrite, never guessed at.
        self.incomplete: dict[str, dict[str, Any]] = {}

    def entries(self) -> dict[str, StateEntry]:
        """Every recorded entry by account id (empty when the file does not exist). Raises: UsageError."""
        from cicd_tools.support.bounded import load_json_bounded

        try:  # a FIFO or device is refused (InputRefused, a usage error) rather than blocking the run
            data = load_json_bounded(self.path, what="firewall state file")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the firewall state file {self.path}: {exc}") from None
        raw_entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(raw_entries, dict | None):
            raise UsageError(f"{self.path} is not a firewall state file (no entries object)",
                             hint="Pass the --state-file that `firewall open` wrote, or delete this one.")
        out: dict[str, StateEntry] = {}
        self.incomplete = {}
        for key, raw in (raw_entries or {}).items():
            try:
                out[key] = StateEntry(
                    account_id=str(raw["accountId"]),
                    lease_id=str(raw["leaseId"]),
                    ip=str(raw["ip"]),
                    expires_at=str(raw["expiresAt"]),
                    preexisting=raw.get("preexisting"),
                    phase=str(raw.get("phase", "opening")),
                )
            except (KeyError, TypeError):
                self.incomplete[key] = dict(raw) if isinstance(raw, dict) else {}
        return out

    def put(self, entry: StateEntry) -> None:
        """Record (or replace) one account's entry, atomically."""
        entries = self.entries()
        entries[entry.account_id.lower()] = entry
        doc: dict[str, Any] = {
            "version": 1,
            "entries": {
                key: {
                    "accountId": e.account_id,
                    "leaseId": e.lease_id,
                    "ip": e.ip,
                    "expiresAt": e.expires_at,
                    "preexisting": e.preexisting,
                    "phase": e.phase,
                }
                for key, e in entries.items()
            },
        }
        for key, raw in self.incomplete.items():  # never drop what we could not read
            doc["entries"].setdefault(key, raw)
        from cicd_tools.support.outpath import write_atomic

        # The default folder (.cicd-tools/ or the agent's temp folder) is the tool's own, created on demand;
        # the folder of a --state-file the user named must exist.
        write_atomic(self.path, json.dumps(doc, indent=2), what="firewall state file", make_parents=self.make_parents,
                     mode=0o600)

    def set_phase(
        self, account_id: str, phase: str, *, preexisting: bool | None = None, lease_id: str | None = None
    ) -> None:
        """Update one entry's phase (and the preexisting flag once known).

        With ``lease_id``, only an entry of that lease: closing another lease (or one that does not exist)
        must never mark this run's own lease closed.
        """
        current = self.entries().get(account_id.lower())
        if current is None or (lease_id is not None and current.lease_id != lease_id):
            return
        flag = current.preexisting if preexisting is None else preexisting
        self.put(dataclasses.replace(current, phase=phase, preexisting=flag))
