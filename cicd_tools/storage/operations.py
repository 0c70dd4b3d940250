"""``firewall open`` and ``firewall close`` as operations: typed requests in, typed results out.

No argparse and no printing: the CLI (``cli/firewall.py``) renders the results (text, JSON, CI outputs), and
``flow`` records them as evidence. The detached guard (``guard_process.py``) is started and stopped here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cicd_tools.settings.resolve import Settings
from cicd_tools.storage.arm import AccountRef
from cicd_tools.storage.firewall import CloseResult, OpenResult, RollbackReport
from cicd_tools.storage.guard import Handoff
from cicd_tools.storage.lease_tags import Lease
from cicd_tools.storage.leases import StateFile
from cicd_tools.storage.mgmt import account_ref, mgmt_client
from cicd_tools.support.errors import CicdError, UsageError

DEFAULT_GRACE = 15.0
DEFAULT_GUARD_INTERVAL = 3.0
MAX_DURATION = {"--ttl": 31 * 86400.0, "--timeout": 7 * 86400.0}


def duration_or_zero(text: str) -> float:
    """A duration that may be 0 (``--grace 0``, ``--guard-interval 0``). Raises: UsageError."""
    from cicd_tools.storage.lease_tags import parse_duration

    return 0.0 if str(text).strip() in ("0", "0s") else parse_duration(text)


def bounded_duration(text: str, flag: str) -> float:
    """A duration flag in seconds, bounded: a rule meant to be temporary has no use for a century-long lease.

    Raises: UsageError naming the flag.
    """
    from cicd_tools.storage.lease_tags import parse_duration

    try:
        seconds = parse_duration(text)
    except UsageError as exc:
        raise UsageError(f"{flag} {exc.message}", hint=exc.hint) from None
    limit = MAX_DURATION[flag]
    if seconds > limit:
        raise UsageError(f"{flag} {text!r} is longer than the {limit / 86400:g} days it may be",
                         hint=f"Use at most {limit / 86400:g}d; `firewall sweep` removes expired leases.")
    return seconds


def state_file(path: str | Path | None, environ: Mapping[str, str] | None = None) -> StateFile:
    """The state file at ``path`` (default beside the CI temp folder). Raises: UsageError when not a file."""
    from cicd_tools.storage.leases import default_state_path

    where = Path(path) if path else default_state_path(os.environ if environ is None else environ, Path.cwd())
    if where.exists() and not where.is_file():  # a folder fails to read; a FIFO would block the run forever
        raise UsageError(f"the firewall state file {where} is not a regular file",
                         hint="Pass --state-file a file path (created by `firewall open`), or leave it out.")
    if path:  # a folder the user named must exist (the default folder is created on demand)
        from cicd_tools.support.outpath import resolve_output

        resolve_output(where, what="firewall state file")
    return StateFile(where, make_parents=not path)


def release_handoff(settings: Settings, ref: AccountRef, state: StateFile) -> Handoff:
    """A handoff that starts the detached release watcher (rollback after a cancel or a timeout)."""

    def handoff(lease: Lease, grace: float) -> None:
        from cicd_tools.storage.guard_process import GuardSpec, spawn
        from cicd_tools.storage.lease_tags import iso

        if grace > 0:
            spawn(GuardSpec(
                "release", ref.id, lease.lease_id, lease.ip, iso(lease.expires_at), lease.preexisting,
                settings.arm_endpoint, str(state.path), 1.0, grace,
            ))
        state.set_phase(ref.id, "closing", lease_id=lease.lease_id)

    return handoff


def run_lease_id(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The lease id this run uses: ``explicit`` (validated), else the CI build's, else a random one."""
    from cicd_tools.storage.lease_tags import default_lease_id, validate_lease_id

    return validate_lease_id(explicit) if explicit else default_lease_id(os.environ if environ is None else environ)


# --- open -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirewallOpenRequest:
    """Open this agent's IP rule on ``settings``' account under ``lease_id``."""

    settings: Settings
    lease_id: str
    state: StateFile
    ttl: float
    timeout: float
    ip: str | None = None
    grace: float = DEFAULT_GRACE
    guard_interval: float = DEFAULT_GUARD_INTERVAL
    successes: int = 3
    probe: bool = True


@dataclass(frozen=True)
class FirewallOpened:
    account: AccountRef
    lease_id: str
    ip: str
    ip_sources: tuple[str, ...]
    result: OpenResult
    state_file: Path
    guard_pid: int | None = None
    guard_interval: float = 0.0
    guard_error: str | None = None  # the rule is open, but its guard did not start
    warnings: tuple[str, ...] = field(default=())

    @property
    def close_command(self) -> str:
        return f"cicd-tools firewall close --lease-id {self.lease_id} --account {self.account.name}"


def open_firewall(
    request: FirewallOpenRequest,
    *,
    on_ip: Callable[[str], None] | None = None,
    on_rollback: Callable[[RollbackReport], None] | None = None,
) -> FirewallOpened:
    """Add the rule, wait until the data plane answers, start its guard. ``on_ip`` hears the agent's IP as soon
    as it is known; ``on_rollback`` what a failed or cancelled open removed again (before the error is raised).

    Raises: UsageError, FirewallNotApplicable, AzureError, TimeoutExpired, Interrupted (after the rollback).
    """
    from cicd_tools.storage.agent_ip import resolve_agent_ip
    from cicd_tools.storage.arm import RetrySettings
    from cicd_tools.storage.blob import container_client
    from cicd_tools.storage.deadline import CallTimedOut, Deadline, bounded_call
    from cicd_tools.storage.firewall import open_rule
    from cicd_tools.storage.guard import RENEW_FOR
    from cicd_tools.storage.smoke import make_list_probe

    settings = request.settings
    ref = account_ref(settings)
    if request.successes < 1:
        raise UsageError(f"--successes {request.successes}: at least one data-plane answer is needed.")
    deadline = Deadline(request.timeout)  # one budget: IP echo, token fetches, ARM calls, probes
    try:
        agent = bounded_call(
            lambda: resolve_agent_ip(
                settings.ip_echo_urls, explicit_ip=request.ip, timeout=max(0.5, min(5.0, deadline.remaining()))
            ),
            deadline.remaining(),
            "asking the IP echo services",
        )
    except CallTimedOut as exc:
        deadline.saw(str(exc))
        raise deadline.expire("the IP echo services did not answer") from None
    if on_ip is not None:
        on_ip(agent.ip)
    probe = make_list_probe(container_client(settings)) if request.probe else None
    state = request.state
    result = open_rule(
        mgmt_client(settings), ref, agent.ip, request.lease_id, request.ttl, probe=probe, timeout=deadline,
        state=state, retry=RetrySettings(reachable_successes=request.successes), grace=request.grace,
        handoff=release_handoff(settings, ref, state),
        renew_for=RENEW_FOR if request.guard_interval > 0 else None, on_rollback=on_rollback,
    )
    opened = FirewallOpened(ref, request.lease_id, agent.ip, tuple(agent.sources), result, state.path,
                            warnings=result.warnings)
    if result.skipped or request.guard_interval <= 0 or not result.expires_at:
        return opened
    from cicd_tools.storage.guard_process import GuardSpec, spawn

    try:
        pid = spawn(GuardSpec(
            "hold", ref.id, request.lease_id, agent.ip, result.expires_at, result.preexisting, settings.arm_endpoint,
            str(state.path), request.guard_interval, request.grace, result.renew_by,
        ))
    except OSError as exc:  # the rule is open and recorded: say what is missing instead of failing
        return replace(opened, guard_error=str(exc))
    return replace(opened, guard_pid=pid, guard_interval=request.guard_interval)


# --- close ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirewallCloseRequest:
    """Close what ``state`` records (or, with ``lease_id``, exactly that lease, from anywhere)."""

    settings: Settings
    state: StateFile
    timeout: float
    lease_id: str | None = None  # explicit: close exactly this lease
    lease_known: bool = False  # the lease id this run would use is the one open used (explicit, or a CI build id)
    grace: float = DEFAULT_GRACE
    ip: str | None = None
    watch: bool = True  # False (a cancelled flow): the close watch goes to the detached release watcher at once


@dataclass(frozen=True)
class FirewallClosed:
    results: tuple[CloseResult, ...] = ()
    nothing_to_do: str | None = None


def close_firewall(
    request: FirewallCloseRequest, *, on_guard_stopped: Callable[[int], None] | None = None
) -> FirewallClosed:
    """Remove the rules the state file (or the lease id) names; stop their guards first.

    Raises: UsageError (an incomplete state entry; no such lease while this IP holds another), AzureError.
    """
    from cicd_tools.storage.firewall import close_rule
    from cicd_tools.storage.guard_process import stop

    state, settings = request.state, request.settings
    recorded = state.entries()
    live = ("opening", "open", "closing", "close-failed")
    entries = [e for e in recorded.values() if e.phase in live]
    if request.lease_id:  # an explicit lease: close exactly that one, from anywhere
        entries = [e for e in entries if e.lease_id == request.lease_id]
    incomplete = {k: raw for k, raw in state.incomplete.items() if str(raw.get("phase", "opening")) in live}
    targets: list[tuple[AccountRef, str, Lease | None]] = []
    unresolved: list[tuple[AccountRef, dict[str, Any]]] = []
    if not entries and not incomplete:
        have_account = all((settings.subscription_id, settings.resource_group, settings.storage_account))
        if ((recorded or state.incomplete) and not request.lease_id) or not (have_account and request.lease_known):
            phases = sorted({e.phase for e in recorded.values()})
            why = (
                f"already {' / '.join(phases)} (state file {state.path})"
                if recorded or state.incomplete
                else f"no state file at {state.path} (open never ran here)"
            )
            return FirewallClosed(nothing_to_do=why)
        # No state record here (another job opened it): the lease id still finds the tag.
        targets.append((account_ref(settings), run_lease_id(request.lease_id), None))
    for e in entries:
        targets.append((AccountRef(*split_account_id(e.account_id, state)), e.lease_id, _recorded_lease(e)))
    for key, raw in incomplete.items():
        # An entry without its lease id (edited by hand, written by another tool): the lease id this run
        # would use still finds our tag; without one, say exactly which command closes it.
        ref = AccountRef(*split_account_id(str(raw.get("accountId") or key), state))
        if request.lease_known:
            targets.append((ref, run_lease_id(request.lease_id), None))
        else:
            unresolved.append((ref, raw))
    first_ref = targets[0][0] if targets else unresolved[0][0]
    client = mgmt_client(settings if settings.subscription_id else replace(
        settings, subscription_id=first_ref.subscription_id))
    results = []
    for ref, target_lease, fallback in targets:
        stopped = stop(state.path, target_lease)
        if stopped and on_guard_stopped is not None:
            on_guard_stopped(stopped)
        results.append(close_rule(
            client, ref, target_lease, fallback=fallback, timeout=request.timeout, state=state, grace=request.grace,
            handoff=release_handoff(settings, ref, state), watch=request.watch,
        ))
    if unresolved:
        raise _incomplete_entry_error(client, unresolved, state, request.timeout, closed=len(results))
    unmatched = [r for r, (_, _, fallback) in zip(results, targets, strict=True) if r.nothing_to_do and not fallback]
    if unmatched:
        _refuse_if_this_ip_holds_another_lease(request, client, unmatched[0].account_id, unmatched[0].lease_id)
    return FirewallClosed(results=tuple(results))


def hand_off_close(request: FirewallCloseRequest, lease_id: str) -> list[tuple[str, bool]]:
    """Hand lease ``lease_id``'s close (the removal, and the watch after it) to the detached release watcher.

    For a cancelled flow whose close is held (a slow PATCH, the close watch): the watcher does the removal itself
    and keeps removing for the grace window, so the flow exits at once. The state file's record of the lease is
    all it needs; the open's guard stops when it sees the phase leave ``open``. Returns, per rule handed over, a
    line saying what the watcher does, and whether the close had removed the rule already (only its watch cut).
    """
    state = request.state
    window = request.grace if request.grace > 0 else DEFAULT_GRACE  # the watcher does the removal: never zero
    handed: list[tuple[str, bool]] = []
    for entry in state.entries().values():
        lease = _recorded_lease(entry) if entry.lease_id == lease_id else None
        if lease is None:
            continue
        done = entry.phase == "closed"  # the close's PATCH had landed: only its watch goes on, detached
        ref = AccountRef(*split_account_id(entry.account_id, state))
        release_handoff(request.settings, ref, state)(lease, window)
        if done:
            state.set_phase(ref.id, "closed", lease_id=lease.lease_id)
        handed.append((f"rule {lease.ip} on {ref.name} " + ("removed, the release watcher keeps it removed" if done
                                                             else "handed to the release watcher to remove"), done))
    return handed


def _refuse_if_this_ip_holds_another_lease(
    request: FirewallCloseRequest, client: Any, account_id: str, lease_id: str
) -> None:
    """No lease ``lease_id``: if this agent's IP holds another live lease, say which and how to close it.

    Raises: UsageError (exit 2) naming the command that closes it.
    """
    from datetime import UTC, datetime

    from cicd_tools.storage.agent_ip import resolve_agent_ip
    from cicd_tools.storage.arm import accounts_api
    from cicd_tools.storage.lease_tags import iso, leases_in
    from cicd_tools.storage.leases import account_tags

    sub, group, name = split_account_id(account_id)
    try:
        ip = resolve_agent_ip(request.settings.ip_echo_urls, explicit_ip=request.ip).ip
        account = accounts_api(client).get(AccountRef(sub, group, name))
    except Exception:  # best effort: the close itself already succeeded as far as it could
        return
    now = datetime.now(UTC)
    live = [x for x in leases_in(account_tags(account)) if x.ip == ip and x.is_live(now) and x.lease_id != lease_id]
    if not live:
        return
    other = live[0]
    raise UsageError(
        f"no lease {lease_id} on {name}, but lease {other.lease_id} holds this agent's IP {ip} until"
        f" {iso(other.expires_at)} (opened by another job or with another --lease-id).",
        hint=f"Close it with: cicd-tools firewall close --lease-id {other.lease_id} --account {name}"
        f" --resource-group {group} --subscription-id {sub}",
        code="LeaseIdMismatch",
    )


def _recorded_lease(entry: Any) -> Lease | None:
    """The state file's record of the lease, or None when its expiry is unreadable (the tag still finds it)."""
    try:
        lease: Lease = entry.lease()
    except ValueError:
        return None
    return lease


def _incomplete_entry_error(
    client: Any, unresolved: list[tuple[AccountRef, dict[str, Any]]], state: StateFile, timeout: float, closed: int
) -> Exception:
    """A UsageError naming the leases that hold each unresolved entry's IP, and the command that closes one."""
    from cicd_tools.storage.arm import ArmOperation, RetrySettings, Runtime, accounts_api
    from cicd_tools.storage.lease_tags import leases_in
    from cicd_tools.storage.leases import account_tags

    parts, commands = [], []
    for ref, raw in unresolved:
        ip = raw.get("ip")
        try:
            account = ArmOperation(accounts_api(client), ref, timeout, RetrySettings(), Runtime()).get()
            held = [x for x in leases_in(account_tags(account)) if ip is None or x.ip == ip]
            found = ", ".join(f"{x.lease_id} ({x.ip})" for x in held) or "none"
        except CicdError as exc:
            held, found = [], f"unknown ({exc.message})"
        parts.append(f"{ref.name}: the state file records {ip or 'an IP'} without a leaseId; leases on the"
                     f" account: {found}")
        for held_id in [x.lease_id for x in held] or ["LEASE_ID"]:
            commands.append(
                f"cicd-tools firewall close --state-file {state.path} --lease-id {held_id}"
                f" --subscription-id {ref.subscription_id} --resource-group {ref.resource_group} --account {ref.name}"
            )
    done = f"closed {closed} complete entr{'y' if closed == 1 else 'ies'}; " if closed else ""
    return UsageError(
        done + "; ".join(parts),
        hint="The rule may still be open. Close it with: " + " | or: ".join(commands)
        + " (or `cicd-tools firewall sweep` after the lease expires).",
        code="StateEntryIncomplete",
    )


def split_account_id(account_id: str, state: StateFile | None = None) -> tuple[str, str, str]:
    """``(subscription, group, name)`` of a recorded ARM id. Raises: UsageError when it is not one."""
    parts = account_id.strip("/").split("/")
    if len(parts) != 8 or parts[0].lower() != "subscriptions" or parts[2].lower() != "resourcegroups":
        raise UsageError(
            f"the firewall state file {state.path if state else ''} records {account_id!r}, not a storage account id",
            hint="Close by naming the account: --subscription-id, --resource-group, --account and --lease-id.",
        )
    return parts[1], parts[3], parts[-1]
