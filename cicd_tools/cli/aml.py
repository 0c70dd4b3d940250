"""`cicd-tools aml ...`: Azure ML jobs: lint a job before submission, verify what ran after.

``lint-job`` is offline (YAML/JSON parsing only). ``verify`` reads jobs over plain ARM REST (no
azure.ai.ml import), the pointer history from blob storage, and for ``--adf-run-id`` the factory's
activity runs through azure-mgmt-datafactory; every SDK import happens inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.ci import CiKind
from cicd_tools.cli._base import Context, Outcome, env_default, missing_subcommand
from cicd_tools.cli._clients import add_storage_flags, container_client, jobs_of_adf_run, storage_settings
from cicd_tools.settings.resolve import Settings
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
                     "at or above --fail-on."))
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="job YAML or pipeline JSON files")
    parser.add_argument("--fail-on", choices=("error", "warning"), default="warning",
                        help="lowest severity that fails the run (default: warning)")
    parser.set_defaults(handler=_lint)


def _lint(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.aml.lint_job import lint_files

    findings = lint_files(args.files)
    severities = ("error",) if args.fail_on == "error" else ("error", "warning")
    failing = [f for f in findings if f.severity in severities]
    for finding in findings if ctx.ci.kind is not CiKind.PLAIN else []:
        ctx.ci.annotate("error" if finding.severity == "error" else "warning",
                        f"{finding.message} Fix: {finding.fix}", file=finding.file, line=finding.line,
                        title=finding.rule)
    lines = [f"{f.file}:{f.line or 1}: {f.path}: {f.severity} {f.rule}: {f.message}\n  fix: {f.fix}"
             for f in findings]
    lines.append(f"{len(findings)} finding(s) in {len(args.files)} file(s)")
    return Outcome(data={"findings": [f.as_json() for f in findings], "files": [str(f) for f in args.files]},
                   text="\n".join(lines), exit_code=int(ExitCode.FINDINGS) if failing else 0)


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


def _workspace(args: argparse.Namespace) -> Any:
    from cicd_tools.codeassets.workspace import WorkspaceRef

    return WorkspaceRef.from_settings(Settings.from_env(
        subscription_id=args.subscription_id, resource_group=args.resource_group, workspace=args.workspace,
        arm_endpoint=args.arm_endpoint))


def _verify(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.adf.client import ArmCalls
    from cicd_tools.aml.jobs_arm import WorkspaceJobs, read_output_evidence
    from cicd_tools.aml.verify import evidence, judge_job, published_at
    from cicd_tools.credentials import build_credential
    from cicd_tools.storage.deadline import Deadline, within
    from cicd_tools.storage.leases import parse_duration

    deadline = Deadline(parse_duration(args.timeout))  # one deadline and one retry policy for every call
    calls = ArmCalls(deadline=deadline.end)
    workspace = _workspace(args)
    credential = build_credential()
    pointers: list[str] = list(dict.fromkeys(args.pointers or []))
    histories = {asset: within(deadline, f"reading the publication history of pointer {asset}",
                               lambda asset=asset: _pointer_history(args, asset))  # type: ignore[misc]
                 for asset in pointers}  # a pointer typo fails first
    if args.adf_run_id is not None:
        submitted = jobs_of_adf_run(args.factory, args.adf_run_id, workspace, credential,
                                    direct="cicd-tools aml verify --job NAME", calls=calls)
        names = [job.name for job in submitted]
        run_assets = {job.name: job.asset_name for job in submitted}
    else:
        names, run_assets = list(dict.fromkeys(args.jobs)), {}
    verdicts: list[JobVerdict] = []
    with WorkspaceJobs(workspace, credential, retry=calls) as jobs:
        hashes: dict[tuple[str, str], str | None] = {}

        def registered_hash(name: str, version: str) -> str | None:
            if (name, version) not in hashes:
                info = jobs.get_version(name, version)
                hashes[(name, version)] = info.hash_sha256 if info else None
            return hashes[(name, version)]

        for name in names:
            job = jobs.get_job(name)
            created = (job.get("systemData") or {}).get("createdAt")
            note = None
            if pointers:
                asset, note = _pointer_for(job, pointers, run_assets.get(name))
                record = published_at(histories[asset], created) if asset else None
                expected = record.assetId if record else None
                if asset and record is None:
                    note = f"no publication of pointer {asset} at or before the job's creation ({created})"
            else:
                expected = args.expect_code_id
            found = within(deadline, f"reading the evidence job {name} wrote",
                           lambda job=job: read_output_evidence(jobs, job, credential))  # type: ignore[misc]
            verdict = judge_job(job, expected_code_id=expected, code_hash=found.code_hash,
                                registered_hash=registered_hash, note=note or found.note)
            verdicts.append(verdict)
            log.info("job %s: %s, codeId %s (expected %s)", name, verdict.status, verdict.code_id, expected)
    expected_ids = {v.expected_code_id for v in verdicts}
    top = args.expect_code_id or (expected_ids.pop() if len(expected_ids) == 1 else None)
    data = evidence(verdicts, top)
    if args.result_file:
        from cicd_tools.cli._code_assets import write_json_atomic

        try:
            write_json_atomic(args.result_file, data)
        except OSError as exc:
            import json

            log.warning("aml verify evidence: %s", json.dumps(data))  # not lost with the file
            raise UsageError(f"cannot write --result-file {args.result_file}: {exc}") from None
    ctx.ci.set_output("amlVerifyOk", "true" if data["ok"] else "false")
    return Outcome(data=data, text=_verify_text(verdicts), exit_code=_verify_exit(verdicts))


def _pointer_for(job: dict[str, Any], pointers: list[str], run_asset: str | None) -> tuple[str | None, str | None]:
    """Which pointer a job is held to, and a note when none fits.

    One pointer: every job. Several: the asset the submitting ADF run named (its ``assetName`` parameter: what the
    job was *meant* to run), else the asset the job's codeId names.
    """
    if len(pointers) == 1:
        return pointers[0], None
    if run_asset is not None:
        if run_asset in pointers:
            return run_asset, None
        return None, f"the ADF run submitted this job for asset {run_asset}, which is none of --pointer {pointers}"
    code_id = str((job.get("properties") or {}).get("codeId") or "")
    match = re.search(r"/codes/([^/]+)/versions/", code_id, re.IGNORECASE)
    ran = match.group(1) if match else None
    if ran in pointers:
        return ran, None
    return None, f"the job's codeId names asset {ran}, which is none of --pointer {pointers}"


def _pointer_history(args: argparse.Namespace, asset: str) -> list[Any]:
    from cicd_tools.pointer.contract import ASSET_NAME_RE, list_history

    if not re.match(ASSET_NAME_RE, asset):
        raise UsageError(f"--pointer {asset!r} is not a code asset name",
                         hint="Pass the asset whose latest.json CI publishes, e.g. --pointer training-code.")
    records = [pointer for _, pointer in list_history(container_client(storage_settings(args)), asset)]
    if not records:
        from cicd_tools.support.errors import ContractViolation

        raise ContractViolation(f"pointer {asset} has no publication history in the pointer container",
                                hint="Publish it with `cicd-tools code register --pointer` (or check --container).",
                                code="PointerHistoryEmpty")
    return records


def _verify_exit(verdicts: list[JobVerdict]) -> int:
    if any(not v.code_id_matches or v.hash_matches is False for v in verdicts):
        return int(ExitCode.CONTRACT)
    if any(v.status != "Completed" for v in verdicts):
        return int(ExitCode.RUN_FAILED)
    return 0


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
