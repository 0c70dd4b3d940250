"""``cicd-tools preflight``: read the identity and network chain from CI to the GPU job, link by link.

Reads only (GET over ARM, and the local adf/ folder). Exit codes: 0 every link ok (warnings allowed),
2 a link fails (the fix is printed) or the configuration is wrong, 3 ARM could not be asked at all.
"""

from __future__ import annotations

import argparse
import logging
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from cicd_tools.ci import CiKind
from cicd_tools.cli._base import Context, Outcome, env_default, settings_from_args
from cicd_tools.support.bounded import InputRefused, load_json_bounded
from cicd_tools.support.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from cicd_tools.preflight.context import Targets
    from cicd_tools.preflight.model import PreflightReport

log = logging.getLogger("cicd_tools.preflight")

LINKS = ("ci-identity", "factory", "storage", "compute", "aks", "rbac-freshness")  # runner.LINKS, kept light here
_NAME = re.compile(r"^[\w.()-]{0,89}[\w()-]$")  # resource group rules, the loosest of the names taken here
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "preflight",
        help="read-only check of the identity and network chain (CI -> storage -> ADF -> Azure ML -> AKS)",
        description="Reads role assignments, storage, workspace, compute, AKS, extension, managed identity and "
        "factory settings (never changes anything) and reports each link ok/warn/fail with the evidence and the "
        "exact fix. Exit codes: 0 all ok, 2 a link fails or bad configuration, 3 Azure could not be asked.",
    )
    env_default(parser, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the resources")
    env_default(parser, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the resources")
    env_default(parser, "--account", env="CICD_STORAGE_ACCOUNT", help="the pointer storage account")
    env_default(parser, "--container", env="CICD_POINTER_CONTAINER", default="ml-globals",
                help="the pointer container")
    env_default(parser, "--workspace", env="CICD_WORKSPACE", help="the Azure ML workspace")
    env_default(parser, "--compute", env="CICD_COMPUTE",
                help="the workspace's Kubernetes compute (default: the factory's computeName global parameter)")
    env_default(parser, "--aks-cluster", env="CICD_AKS_CLUSTER",
                help="the AKS cluster (default: the one the compute is attached to)")
    env_default(parser, "--factory", env="CICD_FACTORY", help="the data factory (unset: the factory link is skipped)")
    env_default(parser, "--adf-dir", env="CICD_ADF_DIR",
                help="the factory's Git folder, for instance types and WebActivity connectVia (default: ./adf if "
                "it exists)")
    parser.add_argument("--no-firewall", action="store_true",
                        help="CI does not open storage IP rules (agent inside the VNet): skip those requirements")
    parser.add_argument("--skip", action="append", choices=LINKS, default=[], metavar="LINK",
                        help=f"skip a link (repeatable): {', '.join(LINKS)}")
    env_default(parser, "--fresh-minutes", env="CICD_PREFLIGHT_FRESH_MINUTES", default="30",
                help="warn about role assignments younger than this (may not have propagated)")
    env_default(parser, "--config", env="CICD_CONFIG",
                help="take the names from this cicd-tools.toml (default ./cicd-tools.toml, else [tool.cicd-tools] "
                "in pyproject.toml), the file `flow` reads, as strictly: [azure] subscription-id, resource-group, "
                "workspace, factory; [storage] account, container (flags and CICD_* variables win)")
    parser.set_defaults(handler=_preflight)


def _name(flag: str, value: str | None, pattern: re.Pattern[str] = _NAME) -> str:
    if not value or not pattern.match(value):
        raise ConfigError(f"{flag} {value!r} is not a valid Azure resource name",
                          hint=f"Pass {flag} with the resource's name as the portal shows it.")
    return value


def _adf_dir(raw: str | None) -> Path | None:
    if raw:
        path = Path(raw)
        if not path.is_dir():
            raise ConfigError(f"--adf-dir {raw}: no such folder",
                              hint="Pass the folder holding the factory's pipeline/ (the repo's adf/), or unset "
                              "CICD_ADF_DIR.")
        return path
    default = Path("adf")
    return default if default.is_dir() else None


def _compute_from_factory(adf_dir: Path | None) -> str | None:
    """The ``computeName`` global parameter of the factory under ``adf_dir`` (what the pipelines submit to)."""
    if adf_dir is None:
        return None
    for path in sorted((adf_dir / "factory").glob("*.json")):
        try:
            params = load_json_bounded(path, what="ADF file").get("properties", {}).get("globalParameters", {})
        except (OSError, ValueError, AttributeError, InputRefused):
            continue
        value = (params.get("computeName") or {}).get("value") if isinstance(params, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def targets_from_args(args: argparse.Namespace) -> Targets:
    """The ``Targets`` the flags name. Raises: ConfigError naming the flag."""
    from cicd_tools.preflight.context import Targets

    # The names were resolved with the other commands' (flag > CICD_* > config file > default): the config file
    # is read by the one strict loader, so an unknown key is refused here as `flow` refuses it.
    settings = settings_from_args(args, subscription_id="subscription_id", resource_group="resource_group",
                                  storage_account="account", workspace="workspace", factory="factory")
    settings.require("subscription_id", "resource_group", "storage_account", "workspace")
    try:
        uuid.UUID(str(settings.subscription_id))
    except ValueError:
        raise ConfigError(f"--subscription-id {settings.subscription_id!r} is not a subscription id (a GUID)",
                          hint="Pass the subscription's id, e.g. from `az account show --query id -o tsv`.") from None
    try:
        fresh = float(args.fresh_minutes)
    except ValueError:
        fresh = -1.0
    if not fresh > 0:
        raise ConfigError(f"--fresh-minutes {args.fresh_minutes!r} must be a positive number of minutes")
    adf_dir = _adf_dir(args.adf_dir)
    compute = args.compute or _compute_from_factory(adf_dir)
    if not compute:
        raise ConfigError("missing configuration: --compute / CICD_COMPUTE (no computeName global parameter in "
                          "the adf/ folder either)")
    return Targets(
        subscription_id=str(settings.subscription_id),
        resource_group=_name("--resource-group", settings.resource_group),
        storage_account=_name("--account", settings.storage_account, _ACCOUNT),
        container=_name("--container", args.container, re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")),
        workspace=_name("--workspace", settings.workspace),
        compute=_name("--compute", compute),
        factory=_name("--factory", settings.factory) if settings.factory and "factory" not in args.skip else None,
        aks_cluster=_name("--aks-cluster", args.aks_cluster) if args.aks_cluster else None,
        adf_dir=adf_dir,
        manage_firewall=not args.no_firewall,
        fresh_minutes=fresh,
    )


def _preflight(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.preflight.operations import PreflightRequest, run_checks

    request = PreflightRequest(targets_from_args(args),
                               settings_from_args(args, arm_endpoint="arm_endpoint").arm_endpoint, tuple(args.skip))
    result = run_checks(request)
    report = result.report
    _annotate(report, ctx)
    ctx.ci.set_output("preflightStatus", report.status)
    data = report.to_dict() | {"elapsedSeconds": result.elapsed}
    return Outcome(data=data, text=render(report, result.elapsed),
                   exit_code=int(ExitCode.USAGE) if result.failed else 0)


def _annotate(report: PreflightReport, ctx: Context) -> None:
    if ctx.ci.kind is CiKind.PLAIN:
        return  # the text output says it already
    cause = report.root_cause
    for link in report.links:
        for check in link.checks:
            if check.status == "ok":
                continue
            first = " (root cause)" if cause is not None and check is cause.check else ""
            fix = f" Fix: {check.fix}" if check.fix else ""
            ctx.ci.annotate("error" if check.status == "fail" else "warning",
                            f"[{link.link}] {check.id}{first}: {check.evidence}.{fix}", title="preflight")


def render(report: PreflightReport, elapsed: float) -> str:
    """The report for people: the root cause first, then every link and its checks."""
    who = report.principal.get("upn") or report.principal.get("name") or report.principal.get("appid") or "?"
    lines = [f"preflight as {who} (object id {report.principal.get('oid', '?')}): {report.status.upper()} "
             f"in {elapsed:.2f} s"]
    cause = report.root_cause
    if cause is not None:
        lines += [f"root cause: [{cause.link}] {cause.check.id}: {cause.check.evidence}",
                  *(f"  fix: {line}" for line in (cause.check.fix or "").splitlines())]
    for link in report.links:
        lines.append(f"{MARKS[link.status]} {link.link:<15} {link.title}")
        for check in link.checks:
            lines.append(f"       {MARKS[check.status]} {check.id}: {check.evidence}")
            if check.status != "ok" and check.fix:
                lines += [f"            fix: {line}" for line in check.fix.splitlines()]
    if report.skipped:
        lines.append(f"skipped: {', '.join(report.skipped)}")
    return "\n".join(lines)
