"""``cicd-tools firewall open|close|sweep``: temporary storage IP rules held by leases, closed always."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from cicd_tools.ci import build_id
from cicd_tools.cli._base import Context, Outcome, env_default, settings_from_args
from cicd_tools.cli._clients import add_storage_flags
from cicd_tools.settings.resolve import Settings
from cicd_tools.storage.mgmt import account_ref, mgmt_client
from cicd_tools.storage.operations import bounded_duration, duration_or_zero

if TYPE_CHECKING:
    from cicd_tools.storage.firewall import CloseResult

log = logging.getLogger("cicd_tools.storage")

__all__ = ["account_ref", "account_settings", "add_account_flags", "camel_keys", "duration_or_zero", "mgmt_client"]


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


def account_settings(args: argparse.Namespace) -> Settings:
    return settings_from_args(args, subscription_id="subscription_id", resource_group="resource_group",
                              storage_account="account", blob_endpoint="blob_endpoint",
                              pointer_container="container", auth_mode="auth_mode",
                              connection_string="connection_string")


def _open(args: argparse.Namespace, ctx: Context) -> Outcome:
    from dataclasses import asdict

    from cicd_tools.storage.operations import FirewallOpenRequest, open_firewall, run_lease_id, state_file

    settings = account_settings(args)
    ref = account_ref(settings)
    ttl, timeout = bounded_duration(args.ttl, "--ttl"), bounded_duration(args.timeout, "--timeout")
    grace, guard_interval = duration_or_zero(args.grace), duration_or_zero(args.guard_interval)
    if args.successes < 1:
        from cicd_tools.support.errors import UsageError

        raise UsageError(f"--successes {args.successes}: at least one data-plane answer is needed.")
    lease_id = run_lease_id(args.lease_id)
    request = FirewallOpenRequest(
        settings=settings, lease_id=lease_id, state=state_file(args.state_file), ttl=ttl, timeout=timeout,
        ip=args.ip, grace=grace, guard_interval=guard_interval, successes=args.successes, probe=not args.no_probe)
    opened = open_firewall(request)
    result = opened.result
    ctx.ci.set_output("agentIp", opened.ip)
    ctx.ci.set_output("leaseId", lease_id)
    if opened.guard_error is not None:
        ctx.ci.annotate(
            "warning",
            f"the firewall guard could not start ({opened.guard_error}); lease {lease_id} is not defended against"
            f" concurrent writers and lapses at {result.renew_by} unless re-opened (`firewall sweep` may then"
            " remove it)",
            title="firewall open",
        )
    close_cmd = opened.close_command
    data = {
        **camel_keys(asdict(result)), "ipSources": list(opened.ip_sources), "stateFile": str(opened.state_file),
        "guardPid": opened.guard_pid, "closeCommand": close_cmd,
    }
    if result.skipped:
        text = f"nothing to do on {ref.name}: {result.skipped} (every network may connect)"
    else:
        how = "already allowed" if result.preexisting else "added"
        reach = "" if result.reachable_after is None else f"; data plane reachable after {result.reachable_after:.1f} s"
        guard = f"; guarded every {guard_interval:g} s (pid {opened.guard_pid})" if opened.guard_pid else ""
        text = (
            f"{opened.ip} {how} on {ref.name} (lease {lease_id}, until {result.expires_at}){reach}{guard}\n"
            f"close it from any job: {close_cmd}"
        )
    for warning in result.warnings:
        ctx.ci.annotate("warning", warning, title="firewall open")
    return Outcome(data=data, text=text)


def _close(args: argparse.Namespace, ctx: Context) -> Outcome:

    from cicd_tools.storage.operations import FirewallCloseRequest, close_firewall, state_file

    timeout, grace = bounded_duration(args.timeout, "--timeout"), duration_or_zero(args.grace)
    request = FirewallCloseRequest(
        settings=account_settings(args), state=state_file(args.state_file), timeout=timeout,
        lease_id=args.lease_id, lease_known=bool(args.lease_id or build_id()), grace=grace, ip=args.ip)
    def guard_stopped(pid: int) -> None:  # a fact for CI, never a process id
        log.info("stopped the firewall guard (process %d)", pid)
        ctx.ci.set_output("guardStopped", "true")

    closed = close_firewall(request, on_guard_stopped=guard_stopped)
    if closed.nothing_to_do is not None:
        why = closed.nothing_to_do
        return Outcome(data={"closed": [], "nothingToDo": why}, text=f"nothing to close: {why}")
    results = closed.results
    lines = [
        f"{r.account_id.rsplit('/', 1)[-1]}: "
        + (r.nothing_to_do or f"lease {r.lease_id} removed; rule {r.ip} {'removed' if r.rule_removed else 'kept'}")
        + (f"; watched {r.watched:g} s, removed again {r.re_removed} time(s)" if r.watched else "")
        for r in results
    ]
    return Outcome(data={"closed": [close_json(r) for r in results]}, text="\n".join(lines))


def close_json(result: CloseResult) -> dict[str, Any]:
    from dataclasses import asdict

    return camel_keys({k: v for k, v in asdict(result).items() if k != "lease"})


def _sweep(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.storage.account_operations import SweepRequest, sweep_firewall
    from cicd_tools.storage.lease_tags import iso

    swept_ = sweep_firewall(SweepRequest(account_settings(args), bounded_duration(args.timeout, "--timeout")))
    name, result = swept_.account, swept_.result
    swept = [{"leaseId": x.lease_id, "ip": x.ip, "expiredAt": iso(x.expires_at)} for x in result.swept]
    data = {"account": name, "swept": swept, "rulesRemoved": list(result.rules_removed)}
    if not swept:
        return Outcome(data=data, text=f"{name}: no expired leases")
    text = (
        f"{name}: swept {len(swept)} expired lease(s); removed rules: {', '.join(result.rules_removed) or 'none'}"
    )
    return Outcome(data=data, text=text)
