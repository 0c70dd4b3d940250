"""``cicd-tools storage smoke|diagnose``: prove the blob data plane works from here, or say why not."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from cicd_tools.ci import CiKind
from cicd_tools.cli._base import Context, Outcome, env_default
from cicd_tools.cli._clients import add_storage_flags, storage_settings
from cicd_tools.cli.firewall import add_account_flags, camel_keys
from cicd_tools.support.errors import ExitCode


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "storage",
        help="storage data-plane smoke test and account diagnosis",
        description="Exit codes: 0 ok, 2 configuration, 3 the data plane is not usable / an Azure call failed.",
    )
    sub = parser.add_subparsers(dest="storage_command", metavar="ACTION", required=True)

    smoke = sub.add_parser("smoke", help="list, write, read back and delete a probe blob; classify failures")
    add_storage_flags(smoke)  # --account, --blob-endpoint, --container (default ml-globals), --auth-mode...
    env_default(
        smoke,
        "--denied-budget",
        env="CICD_DENIED_BUDGET",
        default="30s",
        help="retry 403 AuthorizationFailure this long per step (a fresh firewall rule can flap); 0: never",
    )
    smoke.set_defaults(handler=_smoke)

    diag = sub.add_parser("diagnose", help="read the account's settings and report what will bite CI")
    add_account_flags(diag)
    diag.set_defaults(handler=_diagnose)


def _smoke(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.cli._clients import container_client
    from cicd_tools.cli.firewall import duration_or_zero
    from cicd_tools.storage.smoke import smoke_test

    settings = storage_settings(args)
    result = smoke_test(container_client(settings), denied_budget=duration_or_zero(args.denied_budget))
    lines = [f"smoke test of {result.account_url} ({settings.auth_mode}):"]
    for step in result.steps:
        if step.skipped:
            lines.append(f"  {step.step:<6} skipped")
        elif step.ok:
            lines.append(f"  {step.step:<6} ok     {step.latency_ms:.0f} ms")
        else:
            lines.append(f"  {step.step:<6} FAILED [{step.code}] {step.message}")
    failure = result.failure
    if failure is not None:
        lines.append(f"fix ({failure.category}): {failure.fix}")
    if failure is not None and ctx.ci.kind is not CiKind.PLAIN:  # plain: the text above says it already
        ctx.ci.annotate("error", f"storage {failure.step} failed [{failure.code}]: {failure.fix}", title="smoke")
    data = camel_keys(result.to_dict())
    data["steps"] = [camel_keys(asdict(s)) for s in result.steps]
    data["failure"] = camel_keys(asdict(failure)) if failure else None
    return Outcome(data=data, text="\n".join(lines), exit_code=0 if result.usable else int(ExitCode.AZURE))


def _diagnose(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.cli.firewall import account_settings
    from cicd_tools.storage.account_operations import diagnose_account

    diagnosed = diagnose_account(account_settings(args))
    report = diagnosed.diagnosis
    marks = {"error": "x", "warning": "!", "info": "-"}
    lines = [f"storage account {diagnosed.account}:"] + [
        f"  {marks.get(f.level, '-')} [{f.code}] {f.message}" for f in report.findings
    ]
    for finding in report.findings if ctx.ci.kind is not CiKind.PLAIN else ():
        if finding.level in ("error", "warning"):
            ctx.ci.annotate(finding.level, f"[{finding.code}] {finding.message}", title="storage diagnose")
    return Outcome(data=report.to_dict(), text="\n".join(lines))
