"""`cicd-tools aml ...`: Azure ML jobs: lint a job before submission, verify what ran after.

``lint-job`` is offline (YAML/JSON parsing only). ``verify`` reads jobs over plain ARM REST (no
azure.ai.ml import), the pointer history from blob storage, and for ``--adf-run-id`` the factory's
activity runs through azure-mgmt-datafactory; every SDK import happens inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.ci import CiKind
from cicd_tools.cli._base import Context, Outcome, env_default, missing_subcommand, settings_from_args
from cicd_tools.cli._clients import add_storage_flags, container_client, storage_settings
from cicd_tools.support.errors import ExitCode, UsageError

if TYPE_CHECKING:

    from cicd_tools.aml.verify import JobVerdict

log = logging.getLogger("cicd_tools.aml")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``aml`` group: ``lint-job`` and ``verify``."""
    aml = subparsers.add_parser("aml", help="Azure ML jobs: lint before submission, verify after",
                                description="Azure ML command jobs on the Kubernetes compute.")
    aml.set_defaults(handler=missing_subcommand(aml))
    sub = aml.add_subparsers(dest="aml_command", metavar="SUBCOMMAND")
    _register_lint(sub)
    _register_verify(sub)



# --- aml lint-job ---------------------------------------------------------------------------------------
def _register_lint(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "lint-job", help="lint command-job YAML and ADF job-submitting activities (offline)",
        description=("Check Azure ML command jobs before they are submitted: command-job YAML (the az ml / SDK "
                     "schema) and ADF pipeline JSON whose WebActivity PUTs a job. Exit 1 when a finding is "
                     "at or above --fail-on; 2 when a file is not valid YAML/JSON (AML000), as `ci lint`."))
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="job YAML or pipeline JSON files")
    parser.add_argument("--fail-on", choices=("error", "warning"), default="warning",
                        help="lowest severity that fails the run (default: warning)")
    parser.set_defaults(handler=_lint)


def _lint(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.aml.operations import LintJobRequest, lint_jobs
    from cicd_tools.support.cisafe import shown

    result = lint_jobs(LintJobRequest(tuple(args.files), args.fail_on))
    findings = result.findings
    for finding in findings if ctx.ci.kind is not CiKind.PLAIN else []:
        ctx.ci.annotate("error" if finding.severity == "error" else "warning",
                        f"{finding.message} Fix: {finding.fix}", file=finding.file, line=finding.line,
                        title=finding.rule)
    lines = [f"{shown(f.file)}{f':{f.line}' if f.line else ''}: {shown(f.path)}: {f.severity} {f.rule}: {f.message}"
             f"\n  fix: {f.fix}" for f in findings]
    lines.append(f"{len(findings)} finding(s) in {len(args.files)} file(s)")
    # a file that does not parse is bad input (exit 2, as `ci lint`), not a finding about a job
    unreadable = any(f.rule == "AML000" for f in findings)
    exit_code = int(ExitCode.USAGE) if unreadable else 0 if result.passed else int(ExitCode.FINDINGS)
    return Outcome(data={"findings": [f.as_json() for f in findings], "files": [str(f) for f in args.files]},
                   text="\n".join(lines), exit_code=exit_code)


# --- aml verify -----------------------------------------------------------------------------------------
def _register_verify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "verify", help="prove jobs ran the published code version (codeId, status, content hash)",
        description=("Read each job and check: its codeId equals the pointer's assetId as published when the job "
                     "was created (or --expect-code-id), its status is Completed, and the code hash its outputs "
                     "record equals the registered content hash. Exit 5 on a mismatch, 4 when a job did not "
                     "complete."))
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", nargs="+", dest="jobs", metavar="NAME", help="Azure ML job name(s)")
    which.add_argument("--adf-run-id", metavar="RUN_ID",
                       help="a Data Factory pipeline run: verify every job its activities (child runs too) submitted")
    expect = parser.add_mutually_exclusive_group(required=True)
    expect.add_argument("--pointer", nargs="+", dest="pointers", metavar="ASSET",
                        help=("code asset(s) whose pointer history gives the expected id; with several, each job is "
                              "held to the pointer its ADF run named (the run's assetName parameter), else to the "
                              "one its codeId names"))
    expect.add_argument("--expect-code-id", metavar="ID", help="the full ARM id every job's codeId must equal")
    env_default(parser, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the workspace")
    env_default(parser, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the workspace")
    env_default(parser, "--workspace", env="CICD_WORKSPACE", help="Azure ML workspace name")
    env_default(parser, "--factory", env="CICD_FACTORY", help="Data Factory name (for --adf-run-id)")
    env_default(parser, "--arm-endpoint", env="CICD_ARM_ENDPOINT", default="https://management.azure.com",
                help="Azure Resource Manager endpoint")
    parser.add_argument("--result-file", type=Path, metavar="FILE",
                        help="also write the JSON evidence to FILE (written before the exit code is decided)")
    env_default(parser, "--timeout", env="CICD_VERIFY_TIMEOUT", default="5m",
                help="give up (exit 6, naming what was last seen) after this long (90s, 5m); transient failures "
                     "are retried until then")
    add_storage_flags(parser)
    parser.set_defaults(handler=_verify)


def _targets(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The workspace and the factory (its subscription and resource group resolved with the workspace's)."""
    from cicd_tools.codeassets.workspace import WorkspaceRef

    settings = settings_from_args(
        args, subscription_id="subscription_id", resource_group="resource_group", workspace="workspace",
        factory="factory", arm_endpoint="arm_endpoint")
    return WorkspaceRef.from_settings(settings), settings.factory


def _verify(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.aml.operations import VerifyRequest, verify_jobs
    from cicd_tools.credentials import build_credential
    from cicd_tools.support.outpath import resolve_output

    if args.result_file:  # a device, FIFO, folder or missing folder: refused before any call
        resolve_output(args.result_file, what="result file")

    workspace, factory = _targets(args)
    request = VerifyRequest(workspace=workspace, factory=factory, adf_run_id=args.adf_run_id,
                            jobs=tuple(args.jobs or ()), pointers=tuple(args.pointers or ()),
                            expect_code_id=args.expect_code_id, timeout=_verify_timeout(args.timeout))
    credential = build_credential()
    result = verify_jobs(request, credential, container=lambda: container_client(storage_settings(args)))
    data = result.to_json()
    if args.result_file:
        from cicd_tools.support.files import write_json_atomic

        try:
            write_json_atomic(args.result_file, data)
        except OSError as exc:
            import json

            log.warning("aml verify evidence: %s", json.dumps(data))  # not lost with the file
            raise UsageError(f"cannot write --result-file {args.result_file}: {exc}") from None
    ctx.ci.set_output("amlVerifyOk", "true" if data["ok"] else "false")
    return Outcome(data=data, text=_verify_text(list(result.verdicts)), exit_code=result.exit_code)


def _verify_text(verdicts: list[JobVerdict]) -> str:
    lines = []
    for v in verdicts:
        lines.append(f"{'ok  ' if v.ok else 'FAIL'} {v.name}: {v.status}")
        lines.append(f"     codeId:   {v.code_id}")
        if not v.code_id_matches:
            lines.append(f"     expected: {v.expected_code_id}  (MISMATCH)")
        if v.hash_matches is False:
            lines.append(f"     code hash {v.code_hash} != registered {v.expected_hash}  (MISMATCH)")
        elif v.hash_matches:
            lines.append(f"     code hash {v.code_hash} = registered content hash")
        if v.note:
            lines.append(f"     note: {v.note}")
    return "\n".join(lines)


def _verify_timeout(text: str) -> float:
    """``--timeout``: one deadline for every call of the verify (exit 6 naming what was last seen)."""
    from cicd_tools.storage.operations import bounded_duration

    return bounded_duration(text, "--timeout")
