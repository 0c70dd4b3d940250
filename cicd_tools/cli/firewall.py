"""``cicd-tools firewall open|close|sweep``: temporary storage IP rules held by leases, closed always."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.ci import build_id
from cicd_tools.cli._base import Context, Outcome, env_default
from cicd_tools.cli._clients import add_storage_flags
from cicd_tools.settings.resolve import Settings

if TYPE_CHECKING:
    from cicd_tools.storage.firewall import AccountRef
    from cicd_tools.storage.guard import Handoff
    from cicd_tools.storage.leases import Lease, StateFile


def add_account_flags(parser: argparse.ArgumentParser, *, with_account: bool = True) -> None:
    """Which storage account, through which management endpoint (shared with ``storage diagnose``)."""
    env_default(parser, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the storage account")
    env_default(parser, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the storage account")
    if with_account:
        env_default(parser, "--account", env="CICD_STORAGE_ACCOUNT", help="storage account name")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "firewall",
        help="open/close a temporary storage IP rule for this agent",
        description="Temporary storage firewall rules held by leases (tags cicd-fw-<leaseId>). Exit codes: 0 ok,"
        " 2 configuration or unusable agent IP, 3 Azure call failed (classified), 6 timed out.",
    )
    sub = parser.add_subparsers(dest="firewall_command", metavar="ACTION", required=True)

    opener = sub.add_parser("open", help="add this agent's IP rule and wait until the data plane answers")
    add_account_flags(opener, with_account=False)
    add_storage_flags(opener)  # --account, --blob-endpoint, --container, --auth-mode, --connection-string
    env_default(opener, "--ip", env="CICD_AGENT_IP", help="the agent's public IPv4 (default: ask two echo services)")
    env_default(opener, "--ttl", env="CICD_FIREWALL_TTL", default="2h", help="lease lifetime (90s, 30m, 2h)")
    env_default(
        opener,
        "--timeout",
        env="CICD_FIREWALL_TIMEOUT",
        default="5m",
        help="give up (and remove the rule) after this long, including propagation",
    )
    _state_and_lease(opener)
    _grace(opener)
    env_default(
        opener,
        "--guard-interval",
        env="CICD_FIREWALL_GUARD_INTERVAL",
        default="3s",
        help="a detached guard re-reads the account this often and repairs the rule if a concurrent write"
        " removed it, until close (0: no guard)",
    )
    env_default(
        opener,
        "--successes",
        env="CICD_FIREWALL_SUCCESSES",
        default="3",
        type=int,
        help="consecutive data-plane answers before the rule counts as reachable (propagation flaps)",
    )
    opener.add_argument(
        "--no-probe",
        action="store_true",
        help="do not wait until listing --container works (e.g. the identity has no data role)",
    )
    opener.set_defaults(handler=_open)

    closer = sub.add_parser(
        "close",
        help="remove the rule this run opened (safe to run twice, or without open); --lease-id closes any lease",
    )
    add_account_flags(closer)
    _state_and_lease(closer)
    _grace(closer)
    env_default(closer, "--ip", env="CICD_AGENT_IP", help="this agent's public IPv4, to name its live leases")
    env_default(closer, "--timeout", env="CICD_FIREWALL_TIMEOUT", default="2m", help="give up after this long")
    closer.set_defaults(handler=_close)

    sweeper = sub.add_parser("sweep", help="remove expired leases and the rules only they held")
    add_account_flags(sweeper)
    env_default(sweeper, "--timeout", env="CICD_FIREWALL_TIMEOUT", default="2m", help="give up after this long")
    sweeper.set_defaults(handler=_sweep)


def camel_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``{"lease_id": ...}`` -> ``{"leaseId": ...}`` (JSON output is camelCase like Azure's)."""

    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {camel(k): (camel_keys(v) if isinstance(v, dict) else v) for k, v in data.items()}


def _state_and_lease(parser: argparse.ArgumentParser) -> None:
    env_default(
        parser,
        "--state-file",
        env="CICD_FIREWALL_STATE_FILE",
        help="where open records what it did (default $AGENT_TEMPDIRECTORY, $RUNNER_TEMP or"
        " ./.cicd-tools, + firewall-state.json)",
    )
    env_default(
        parser,
        "--lease-id",
        env="CICD_LEASE_ID",
        help="lease id (default: BUILD_BUILDID, GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT, else random)",
    )


def _grace(parser: argparse.ArgumentParser) -> None:
    env_default(
        parser,
        "--grace",
        env="CICD_FIREWALL_GRACE",
        default="15s",
        help="after removing the rule, keep removing it this long: a competitor's slow PATCH can bring it back"
        " (0: do not watch)",
    )


def duration_or_zero(text: str) -> float:
    """A duration that may be 0 (``--grace 0``, ``--guard-interval 0``). Raises: UsageError."""
    from cicd_tools.storage.leases import parse_duration

    return 0.0 if str(text).strip() in ("0", "0s") else parse_duration(text)


def account_settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        subscription_id=args.subscription_id,
        resource_group=args.resource_group,
        storage_account=args.account,
        blob_endpoint=getattr(args, "blob_endpoint", None),
        pointer_container=getattr(args, "container", None),
        auth_mode=getattr(args, "auth_mode", None),
        connection_string=getattr(args, "connection_string", None),
    )


def account_ref(settings: Settings) -> AccountRef:
    from cicd_tools.storage.firewall import AccountRef

    settings.require("subscription_id", "resource_group", "storage_account")
    assert settings.subscription_id and settings.resource_group and settings.storage_account
    return AccountRef(settings.subscription_id, settings.resource_group, settings.storage_account)


def mgmt_client(settings: Settings, credential: Any | None = None) -> Any:
    """A ``StorageManagementClient`` pointed at ``settings.arm_endpoint`` (public Azure or the sandbox)."""
    from azure.mgmt.storage import StorageManagementClient

    from cicd_tools.credentials import build_credential

    return StorageManagementClient(
        credential or build_credential(),
        str(settings.subscription_id),
        base_url=settings.arm_endpoint,
        credential_scopes=[settings.arm_endpoint.rstrip("/") + "/.default"],
    )


def _state_file(args: argparse.Namespace) -> StateFile:
    from cicd_tools.storage.leases import StateFile, default_state_path
    from cicd_tools.support.errors import UsageError

    path = Path(args.state_file) if args.state_file else default_state_path(os.environ, Path.cwd())
    if path.exists() and not path.is_file():  # a folder fails to read; a FIFO would block the run forever
        raise UsageError(f"the firewall state file {path} is not a regular file",
                         hint="Pass --state-file a file path (created by `firewall open`), or leave it out.")
    return StateFile(path)


def _lease_id(args: argparse.Namespace) -> str:
    from cicd_tools.storage.leases import default_lease_id, validate_lease_id

    return validate_lease_id(args.lease_id) if args.lease_id else default_lease_id(os.environ)


MAX_DURATION = {"--ttl": 31 * 86400.0, "--timeout": 7 * 86400.0}


def _duration(text: str, flag: str) -> float:
    """A duration flag in seconds, bounded: a rule meant to be temporary has no use for a century-long lease.

    Raises: UsageError naming the flag.
    """
    from cicd_tools.storage.leases import parse_duration
    from cicd_tools.support.errors import UsageError

    try:
        seconds = parse_duration(text)
    except UsageError as exc:
        raise UsageError(f"{flag} {exc.message}", hint=exc.hint) from None
    limit = MAX_DURATION[flag]
    if seconds > limit:
        raise UsageError(f"{flag} {text!r} is longer than the {limit / 86400:g} days it may be",
                         hint=f"Use at most {limit / 86400:g}d; `firewall sweep` removes expired leases.")
    return seconds


def _open(args: argparse.Namespace, ctx: Context) -> Outcome:
    from dataclasses import asdict

    from cicd_tools.cli._clients import container_client
    from cicd_tools.storage.agent_ip import resolve_agent_ip
    from cicd_tools.storage.arm import RetrySettings
    from cicd_tools.storage.deadline import CallTimedOut, Deadline, bounded_call
    from cicd_tools.storage.firewall import open_rule
    from cicd_tools.storage.guard import RENEW_FOR
    from cicd_tools.storage.smoke import make_list_probe

    settings = account_settings(args)
    ref = account_ref(settings)
    ttl, timeout = _duration(args.ttl, "--ttl"), _duration(args.timeout, "--timeout")
    grace, guard_interval = duration_or_zero(args.grace), duration_or_zero(args.guard_interval)
    if args.successes < 1:
        from cicd_tools.support.errors import UsageError

        raise UsageError(f"--successes {args.successes}: at least one data-plane answer is needed.")
    deadline = Deadline(timeout)  # one budget: IP echo, token fetches, ARM calls, probes
    lease_id = _lease_id(args)
    try:
        agent = bounded_call(
            lambda: resolve_agent_ip(
                settings.ip_echo_urls, explicit_ip=args.ip, timeout=max(0.5, min(5.0, deadline.remaining()))
            ),
            deadline.remaining(),
            "asking the IP echo services",
        )
    except CallTimedOut as exc:
        deadline.saw(str(exc))
        raise deadline.expire("the IP echo services did not answer") from None
    probe = None if args.no_probe else make_list_probe(container_client(settings))
    state = _state_file(args)
    result = open_rule(
        mgmt_client(settings), ref, agent.ip, lease_id, ttl, probe=probe, timeout=deadline, state=state,
        retry=RetrySettings(reachable_successes=args.successes), grace=grace,
        handoff=release_handoff(settings, ref, state), renew_for=RENEW_FOR if guard_interval > 0 else None,
    )
    ctx.ci.set_output("agentIp", agent.ip)
    ctx.ci.set_output("leaseId", lease_id)
    guard_pid = None
    if not result.skipped and guard_interval > 0 and result.expires_at:
        from cicd_tools.cli._firewall_guard import GuardSpec, spawn

        try:
            guard_pid = spawn(GuardSpec(
                "hold", ref.id, lease_id, agent.ip, result.expires_at, result.preexisting, settings.arm_endpoint,
                str(state.path), guard_interval, grace, result.renew_by,
            ))
        except OSError as exc:  # the rule is open and recorded: say what is missing instead of failing
            ctx.ci.annotate(
                "warning",
                f"the firewall guard could not start ({exc}); lease {lease_id} is not defended against concurrent"
                f" writers and lapses at {result.renew_by} unless re-opened (`firewall sweep` may then remove it)",
                title="firewall open",
            )
    close_cmd = f"cicd-tools firewall close --lease-id {lease_id} --account {ref.name}"
    data = {
        **camel_keys(asdict(result)), "ipSources": list(agent.sources), "stateFile": str(state.path),
        "guardPid": guard_pid, "closeCommand": close_cmd,
    }
    if result.skipped:
        text = f"nothing to do on {ref.name}: {result.skipped} (every network may connect)"
    else:
        how = "already allowed" if result.preexisting else "added"
        reach = "" if result.reachable_after is None else f"; data plane reachable after {result.reachable_after:.1f} s"
        guard = f"; guarded every {guard_interval:g} s (pid {guard_pid})" if guard_pid else ""
        text = (
            f"{agent.ip} {how} on {ref.name} (lease {lease_id}, until {result.expires_at}){reach}{guard}\n"
            f"close it from any job: {close_cmd}"
        )
    for warning in result.warnings:
        ctx.ci.annotate("warning", warning, title="firewall open")
    return Outcome(data=data, text=text)


def release_handoff(settings: Settings, ref: AccountRef, state: StateFile) -> Handoff:
    """A handoff that starts the detached release watcher (rollback after a cancel or a timeout)."""

    def handoff(lease: Lease, grace: float) -> None:
        from cicd_tools.cli._firewall_guard import GuardSpec, spawn
        from cicd_tools.storage.leases import iso

        if grace > 0:
            spawn(GuardSpec(
                "release", ref.id, lease.lease_id, lease.ip, iso(lease.expires_at), lease.preexisting,
                settings.arm_endpoint, str(state.path), 1.0, grace,
            ))
        state.set_phase(ref.id, "closing", lease_id=lease.lease_id)

    return handoff


def _close(args: argparse.Namespace, ctx: Context) -> Outcome:
    from dataclasses import asdict

    from cicd_tools.cli._firewall_guard import stop
    from cicd_tools.storage.firewall import AccountRef, close_rule

    timeout, grace = _duration(args.timeout, "--timeout"), duration_or_zero(args.grace)
    state = _state_file(args)
    recorded = state.entries()
    live = ("opening", "open", "closing", "close-failed")
    entries = [e for e in recorded.values() if e.phase in live]
    if args.lease_id:  # an explicit lease: close exactly that one, from anywhere
        entries = [e for e in entries if e.lease_id == args.lease_id]
    incomplete = {k: raw for k, raw in state.incomplete.items() if str(raw.get("phase", "opening")) in live}
    settings = account_settings(args)
    lease_known = args.lease_id or build_id()  # a CI run: its default lease id is reproducible
    targets: list[tuple[AccountRef, str, Lease | None]] = []
    unresolved: list[tuple[AccountRef, dict[str, Any]]] = []
    if not entries and not incomplete:
        have_account = all((settings.subscription_id, settings.resource_group, settings.storage_account))
        if ((recorded or state.incomplete) and not args.lease_id) or not (have_account and lease_known):
            phases = sorted({e.phase for e in recorded.values()})
            why = (
                f"already {' / '.join(phases)} (state file {state.path})"
                if recorded or state.incomplete
                else f"no state file at {state.path} (open never ran here)"
            )
            return Outcome(data={"closed": [], "nothingToDo": why}, text=f"nothing to close: {why}")
        # No state record here (another job opened it): the lease id still finds the tag.
        targets.append((account_ref(settings), _lease_id(args), None))
    for e in entries:
        targets.append((AccountRef(*_split_account_id(e.account_id, state)), e.lease_id, _recorded_lease(e)))
    for key, raw in incomplete.items():
        # An entry without its lease id (edited by hand, written by another tool): the lease id this run
        # would use still finds our tag; without one, say exactly which command closes it.
        ref = AccountRef(*_split_account_id(str(raw.get("accountId") or key), state))
        if lease_known:
            targets.append((ref, _lease_id(args), None))
        else:
            unresolved.append((ref, raw))
    first_ref = targets[0][0] if targets else unresolved[0][0]
    client = mgmt_client(settings if settings.subscription_id else _with_sub(settings, first_ref))
    results = []
    for ref, lease_id, fallback in targets:
        stopped = stop(state.path, lease_id)
        if stopped:
            ctx.ci.set_output("guardStopped", str(stopped))
        results.append(close_rule(
            client, ref, lease_id, fallback=fallback, timeout=timeout, state=state, grace=grace,
            handoff=release_handoff(settings, ref, state),
        ))
    if unresolved:
        raise _incomplete_entry_error(client, unresolved, state, timeout, closed=len(results))
    unmatched = [r for r, (_, _, fallback) in zip(results, targets, strict=True) if r.nothing_to_do and not fallback]
    if unmatched:
        _refuse_if_this_ip_holds_another_lease(args, client, unmatched[0].account_id, unmatched[0].lease_id)
    lines = [
        f"{r.account_id.rsplit('/', 1)[-1]}: "
        + (r.nothing_to_do or f"lease {r.lease_id} removed; rule {r.ip} {'removed' if r.rule_removed else 'kept'}")
        + (f"; watched {r.watched:g} s, removed again {r.re_removed} time(s)" if r.watched else "")
        for r in results
    ]
    closed = [camel_keys({k: v for k, v in asdict(r).items() if k != "lease"}) for r in results]
    return Outcome(data={"closed": closed}, text="\n".join(lines))


def _refuse_if_this_ip_holds_another_lease(
    args: argparse.Namespace, client: Any, account_id: str, lease_id: str
) -> None:
    """No lease ``lease_id``: if this agent's IP holds another live lease, say which and how to close it.

    Raises: UsageError (exit 2) naming the command that closes it.
    """
    from datetime import UTC, datetime

    from cicd_tools.storage.agent_ip import resolve_agent_ip
    from cicd_tools.storage.arm import accounts_api
    from cicd_tools.storage.leases import account_tags, iso, leases_in
    from cicd_tools.support.errors import UsageError

    sub, group, name = _split_account_id(account_id)
    try:
        ip = resolve_agent_ip(account_settings(args).ip_echo_urls, explicit_ip=args.ip).ip
        from cicd_tools.storage.firewall import AccountRef

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
    from cicd_tools.storage.leases import account_tags, leases_in
    from cicd_tools.support.errors import CicdError, UsageError

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
        for lease_id in [x.lease_id for x in held] or ["LEASE_ID"]:
            commands.append(
                f"cicd-tools firewall close --state-file {state.path} --lease-id {lease_id}"
                f" --subscription-id {ref.subscription_id} --resource-group {ref.resource_group} --account {ref.name}"
            )
    done = f"closed {closed} complete entr{'y' if closed == 1 else 'ies'}; " if closed else ""
    return UsageError(
        done + "; ".join(parts),
        hint="The rule may still be open. Close it with: " + " | or: ".join(commands)
        + " (or `cicd-tools firewall sweep` after the lease expires).",
        code="StateEntryIncomplete",
    )


def _with_sub(settings: Settings, ref: AccountRef) -> Settings:
    from dataclasses import replace

    return replace(settings, subscription_id=ref.subscription_id)


def _split_account_id(account_id: str, state: StateFile | None = None) -> tuple[str, str, str]:
    """``(subscription, group, name)`` of a recorded ARM id. Raises: UsageError when it is not one."""
    from cicd_tools.support.errors import UsageError

    parts = account_id.strip("/").split("/")
    if len(parts) != 8 or parts[0].lower() != "subscriptions" or parts[2].lower() != "resourcegroups":
        raise UsageError(
            f"the firewall state file {state.path if state else ''} records {account_id!r}, not a storage account id",
            hint="Close by naming the account: --subscription-id, --resource-group, --account and --lease-id.",
        )
    return parts[1], parts[3], parts[-1]


def _sweep(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.storage.firewall import sweep
    from cicd_tools.storage.leases import iso

    settings = account_settings(args)
    ref = account_ref(settings)
    result = sweep(mgmt_client(settings), ref, timeout=_duration(args.timeout, "--timeout"))
    swept = [{"leaseId": x.lease_id, "ip": x.ip, "expiredAt": iso(x.expires_at)} for x in result.swept]
    data = {"account": ref.name, "swept": swept, "rulesRemoved": list(result.rules_removed)}
    if not swept:
        return Outcome(data=data, text=f"{ref.name}: no expired leases")
    text = (
        f"{ref.name}: swept {len(swept)} expired lease(s); removed rules: {', '.join(result.rules_removed) or 'none'}"
    )
    return Outcome(data=data, text=text)
