"""`cicd-tools model mirror`: a run's final checkpoint becomes a governed Azure ML model version, exactly once.

Sources: ``--job NAME`` (a job's named output), ``--adf-run-id R`` (the training job that factory run
submitted, once its validation completed) or ``--from-path DIR --run-id ID`` (a folder from anywhere).
``--best-effort`` keeps the mirror off the critical path: a failure becomes a warning with its cause
and exit 0. azure.ai.ml, azure-storage-blob and azure-mgmt-datafactory are imported inside the handler.

``Outcome.data`` is a fixed contract (``flow`` reads it): ``ok, modelName, modelVersion, modelAssetId,
reused, sourceRunId, trainingJob, codeId, contentHash, files, skipped, warning, error``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.cli._base import Context, Outcome, env_default, missing_subcommand
from cicd_tools.support.errors import CicdError, ConfigError, EnvironmentProblem, UsageError
from cicd_tools.support.redact import redact

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from cicd_tools.adf.client import ArmCalls
    from cicd_tools.aml.jobs_arm import WorkspaceJobs
    from cicd_tools.aml.models import Lineage

log = logging.getLogger("cicd_tools.model")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``model`` group: ``mirror``."""
    model = subparsers.add_parser("model", help="Azure ML models: mirror a run's checkpoint as a model version",
                                  description="Governed Azure ML model versions from training runs.")
    model.set_defaults(handler=missing_subcommand(model))
    sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    parser = sub.add_parser(
        "mirror", help="register a run's final checkpoint as a custom_model version (idempotent)",
        description=("Select the run's final checkpoint (highest checkpoint-N, or the whole folder), leave out "
                     "optimizer/scheduler/RNG state, keep TensorBoard event files, and register it as a "
                     "custom_model version tagged with its lineage. The same run with the same content returns "
                     "the existing version and uploads nothing; other content for the same run exits 5 unless "
                     "--new-version. Exit 0 with a warning under --best-effort."))
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", metavar="NAME", help="an Azure ML job whose named output holds the checkpoint")
    which.add_argument("--adf-run-id", metavar="RUN_ID",
                       help="a Data Factory run: mirror the training job it submitted, once its validation completed")
    which.add_argument("--from-path", type=Path, metavar="DIR", help="a local checkpoint folder (needs --run-id)")
    parser.add_argument("--run-id", metavar="ID", help="the run that wrote --from-path (the idempotency key)")
    env_default(parser, "--name", env="CICD_MODEL_NAME", help="the model name to register under")
    parser.add_argument("--output-name", default="model", metavar="OUTPUT",
                        help="the job output holding the checkpoint (default: model)")
    parser.add_argument("--validation-job", metavar="NAME",
                        help="with --job: the job that validated it (its metrics become tags; it must have completed)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="also leave out files matching GLOB (basename or relative path; repeatable)")
    parser.add_argument("--include-training-state", action="store_true",
                        help="keep optimizer.pt, scheduler.pt and rng_state*.pth (left out by default)")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra tag on a new version (repeatable; 'cicd.' keys are reserved)")
    parser.add_argument("--new-version", action="store_true",
                        help="register new content for a run that is already mirrored with other content")
    parser.add_argument("--result-file", type=Path, metavar="FILE",
                        help="also write the JSON document to FILE (written on failure too, with the error)")
    parser.add_argument("--best-effort", action="store_true",
                        help="report a failure as a warning with its cause and exit 0 (off the critical path)")
    env_default(parser, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the workspace")
    env_default(parser, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the workspace")
    env_default(parser, "--workspace", env="CICD_WORKSPACE", help="Azure ML workspace name")
    env_default(parser, "--factory", env="CICD_FACTORY", help="Data Factory name (for --adf-run-id)")
    env_default(parser, "--arm-endpoint", env="CICD_ARM_ENDPOINT", default="https://management.azure.com",
                help="Azure Resource Manager endpoint")
    env_default(parser, "--timeout", env="CICD_MIRROR_TIMEOUT", default="30s",
                help="how long each workspace or factory read may keep retrying transient failures (then exit 6 "
                     "naming what was last seen); uploads keep the SDK's own retries")
    parser.set_defaults(handler=_mirror)



def _empty(args: argparse.Namespace) -> dict[str, Any]:
    return {"ok": False, "modelName": args.name, "modelVersion": None, "modelAssetId": None, "reused": False,
            "sourceRunId": None, "trainingJob": None, "codeId": None, "contentHash": None, "files": [],
            "skipped": [], "warning": None, "error": None}


def _mirror(args: argparse.Namespace, ctx: Context) -> Outcome:
    data = _empty(args)
    try:
        _check_args(args)
        ctx.ci.set_output("modelName", args.name)
        try:
            _run(args, ctx, data)
        except ImportError as exc:  # a job image or agent without the Azure SDKs: an environment problem, not a bug
            raise EnvironmentProblem(f"model mirror cannot import {exc.name or exc}: {exc}",
                                     hint="pip install cicd-tools (it brings azure-ai-ml, azure-identity and "
                                          "azure-storage-blob), then `cicd-tools doctor`.",
                                     code="SdkImportFailed") from None
    except CicdError as exc:
        data["ok"] = False
        data["error"] = {"code": exc.code or type(exc).__name__, "message": redact(exc.message),
                         "exitCode": int(exc.exit_code)}
        if not args.best_effort:
            try:
                _write_result(args, data)
            except UsageError as unwritable:
                log.error("%s", unwritable.message)
            raise
        data["warning"] = redact(f"model mirror failed (not blocking: --best-effort): {exc.message}"
                                 + (f" ({exc.hint})" if exc.hint else ""))
        log.warning("%s", data["warning"])
        ctx.ci.annotate("warning", data["warning"], title="model mirror")
    _write_result(args, data)
    return Outcome(data=data, text=_text(data), exit_code=0)


def _write_result(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.result_file:
        from cicd_tools.cli._code_assets import write_json_atomic

        try:
            write_json_atomic(Path(args.result_file), data)
        except OSError as exc:
            raise UsageError(f"cannot write the result file {args.result_file}: {exc.strerror or exc}",
                             hint="Pass a --result-file in a writable folder.", code="ResultFileUnwritable") from None


def _check_args(args: argparse.Namespace) -> None:
    from cicd_tools.aml.models import parse_extra_tags, validate_model_name, validate_run_id

    if not args.name:
        raise ConfigError("model mirror needs the model name: pass --name or set CICD_MODEL_NAME")
    validate_model_name(args.name)
    if args.from_path is not None and not args.run_id:
        raise UsageError("--from-path needs --run-id: the run that wrote the folder is the idempotency key",
                         hint="Pass --run-id with the trainer's or scheduler's run id.", code="RunIdMissing")
    if args.from_path is None and args.run_id:
        raise UsageError("--run-id goes with --from-path only (a job's name is its run id)", code="RunIdUnexpected")
    if args.validation_job and not args.job:
        raise UsageError("--validation-job goes with --job only", code="ValidationJobUnexpected")
    if args.run_id:
        validate_run_id(args.run_id)
    parse_extra_tags(args.tag)


def _run(args: argparse.Namespace, ctx: Context, data: dict[str, Any]) -> None:
    from cicd_tools.aml.checkpoints import DEFAULT_EXCLUDES, stage_checkpoint
    from cicd_tools.aml.models import Lineage, Registry, WorkspaceModels, mirror, parse_extra_tags
    from cicd_tools.credentials import build_credential

    excludes = [*([] if args.include_training_state else DEFAULT_EXCLUDES), *args.exclude]
    if args.from_path is not None:
        lineage: Lineage | None = Lineage(source_run_id=args.run_id)
        staged = stage_checkpoint(args.from_path, excludes=excludes)  # before any Azure call: bad paths fail fast
    from cicd_tools.adf.client import ArmCalls
    from cicd_tools.storage.leases import parse_duration

    # adf run's retry policy; a window per read (not one deadline: the upload between reads is unbounded).
    calls, window = ArmCalls(), parse_duration(args.timeout)

    def retry(what: str, call: Callable[[], Any]) -> Any:
        return calls(what, call, deadline=time.monotonic() + window)

    workspace = _workspace(args)
    credential = build_credential()
    with WorkspaceModels(workspace, credential, retry=retry) as models, \
            tempfile.TemporaryDirectory(prefix="cicd-model-") as tmp:
        if args.from_path is None:
            lineage = _job_source(args, models, credential, Path(tmp), data, calls, window)
            staged = stage_checkpoint(Path(tmp), excludes=excludes)
        assert lineage is not None
        data.update(sourceRunId=lineage.source_run_id, trainingJob=lineage.training_job, codeId=lineage.code_id,
                    contentHash=staged.content_hash, files=staged.files, skipped=list(staged.skipped))
        log.info("staged %d file(s) of %s%s, content hash %s; left out: %s", len(staged.entries),
                 lineage.source_run_id, f" ({staged.checkpoint})" if staged.checkpoint else "",
                 staged.content_hash, ", ".join(staged.skipped) or "nothing")

        def ml_client() -> Any:
            from cicd_tools.codeassets.sdk import build_ml_client

            return build_ml_client(credential, workspace)

        result = mirror(Registry(models, ml_client, credential), args.name, staged, lineage,
                        new_version=args.new_version, extra_tags=parse_extra_tags(args.tag))
    data.update(ok=True, modelName=result.model.name, modelVersion=result.model.version,
                modelAssetId=result.model.id, reused=result.reused)
    ctx.ci.set_output("modelName", result.model.name)
    ctx.ci.set_output("modelVersion", result.model.version)
    ctx.ci.set_output("modelAssetId", result.model.id)


def _workspace(args: argparse.Namespace) -> Any:
    from cicd_tools.codeassets.workspace import WorkspaceRef
    from cicd_tools.settings.resolve import Settings

    return WorkspaceRef.from_settings(Settings.from_env(
        subscription_id=args.subscription_id, resource_group=args.resource_group, workspace=args.workspace,
        arm_endpoint=args.arm_endpoint))


def _job_source(args: argparse.Namespace, jobs: WorkspaceJobs, credential: TokenCredential, target: Path,
                data: dict[str, Any], calls: ArmCalls | None = None, window: float | None = None) -> Lineage:
    """Download the training job's output into ``target``; the lineage (validation included) of that job.

    ``data`` (the evidence) gets the training job and its code id as soon as they are known.
    """
    from cicd_tools.aml.model_sources import (
        download_output,
        job_lineage,
        read_metrics,
        reads_output_of,
        require_completed,
        split_training_and_validation,
    )
    from cicd_tools.aml.models import Lineage

    if args.job:
        training = jobs.get_job(args.job)
        validation = jobs.get_job(args.validation_job) if args.validation_job else None
        if validation is not None and not reads_output_of(validation, args.job, args.output_name):
            raise UsageError(f"job {args.validation_job} does not validate {args.job}: none of its inputs is "
                             f"azureml://jobs/{args.job}/outputs/{args.output_name}",
                             hint="Pass the validation job that read this training job's output, or leave "
                                  "--validation-job out.", code="NotAValidationOfTheJob")
    else:
        from cicd_tools.cli._clients import jobs_of_adf_run

        submitted = jobs_of_adf_run(args.factory, args.adf_run_id, jobs.workspace, credential,
                                    direct="cicd-tools model mirror --job NAME", calls=calls,
                                    deadline=time.monotonic() + window if window else None)
        docs = [jobs.get_job(job.name) for job in submitted]
        training, validation = split_training_and_validation(docs, args.output_name)
        if validation is None:
            log.warning("run %s submitted no job that validates %s; mirrored without validation tags",
                        args.adf_run_id, training.get("name"))
    data.update(sourceRunId=training.get("name"), trainingJob=training.get("name"),
                codeId=(training.get("properties") or {}).get("codeId"))
    require_completed(training, "training")
    metrics: dict[str, str] = {}
    if validation is not None:
        require_completed(validation, "validation")
        metrics = read_metrics(jobs, validation, credential)
    lineage = job_lineage(training, validation, metrics)
    download_output(jobs, training, args.output_name, credential, target)
    return Lineage(source_run_id=lineage.training_job, training_job=lineage.training_job, code_id=lineage.code_id,
                   validation_job=lineage.validation_job, validation_metrics=lineage.validation_metrics,
                   adf_run_id=args.adf_run_id)


def _text(data: dict[str, Any]) -> str:
    if not data["ok"]:
        return f"WARNING {data['warning']}"
    verb = "already registered as" if data["reused"] else "registered"
    lines = [f"{data['sourceRunId']}: {verb} {data['modelName']}:{data['modelVersion']}",
             f"  asset id:     {data['modelAssetId']}",
             f"  content hash: {data['contentHash']} ({len(data['files'])} file(s))"]
    if data["skipped"]:
        lines.append(f"  left out:     {', '.join(data['skipped'])}")
    if data["codeId"]:
        lines.append(f"  code:         {data['codeId']}")
    return "\n".join(lines)
