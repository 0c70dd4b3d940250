"""`cicd-tools model mirror`: a run's final checkpoint becomes a governed Azure ML model version, exactly once.

Sources: ``--job NAME`` (a job's named output), ``--adf-run-id R`` (the training job that factory run
submitted, once its validation completed) or ``--from-path DIR --run-id ID`` (a folder from anywhere).
``--best-effort`` keeps the mirror off the critical path: a failure becomes a warning with its cause
and exit 0. azure.ai.ml, azure-storage-blob and azure-mgmt-datafactory are imported inside the handler.

``Outcome.data`` is a fixed contract (``flow`` reads it): ``ok, modelName, modelVersion, modelAssetId,
reused, sourceRunId, trainingJob, codeId, contentHash, files, skipped, skippedUnsafe, warning, error``
(``skippedUnsafe``: ``{path, reason, detail}`` of entries the folder-walk policy left out, never uploaded:
symlinks resolving outside the folder, loops, FIFOs/sockets/devices; see ``cicd_tools/support/walk.py``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.cli._base import Context, Outcome, env_default, missing_subcommand
from cicd_tools.support.errors import CicdError, UsageError
from cicd_tools.support.redact import redact

if TYPE_CHECKING:

    from cicd_tools.aml.mirroring import MirrorRequest

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



def _request(args: argparse.Namespace) -> MirrorRequest:
    from cicd_tools.aml.mirroring import MirrorRequest
    from cicd_tools.cli._base import settings_from_args

    workspace = settings_from_args(
        args, subscription_id="subscription_id", resource_group="resource_group", workspace="workspace",
        factory="factory", arm_endpoint="arm_endpoint")
    return MirrorRequest(
        workspace=workspace, name=args.name, job=args.job, adf_run_id=args.adf_run_id, from_path=args.from_path,
        run_id=args.run_id, validation_job=args.validation_job, factory=workspace.factory, output_name=args.output_name,
        excludes=tuple(args.exclude), include_training_state=args.include_training_state, tags=tuple(args.tag),
        new_version=args.new_version)


def _mirror(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.aml.mirroring import MirrorResult, check_request, mirror_checkpoint
    from cicd_tools.credentials import build_credential

    if args.result_file:  # a device, FIFO, folder or missing folder: refused before anything (even --best-effort)
        from cicd_tools.support.outpath import resolve_output

        resolve_output(args.result_file, what="result file")
    request = _request(args)
    result = MirrorResult(model_name=args.name)
    try:
        check_request(request)
        ctx.ci.set_output("modelName", args.name)
        try:
            mirror_checkpoint(request, build_credential, result)
        finally:
            for entry in result.skipped_unsafe:
                ctx.ci.annotate("warning", f"model mirror did not upload {entry['path']} ({entry['reason']})",
                                title="model mirror")
        ctx.ci.set_output("modelVersion", str(result.model_version))
        ctx.ci.set_output("modelAssetId", str(result.model_asset_id))
    except CicdError as exc:
        result.failed(exc)
        if not args.best_effort:
            try:
                _write_result(args, result.to_json())
            except UsageError as unwritable:
                log.error("%s", unwritable.message)
            raise
        result.warning = redact(f"model mirror failed (not blocking: --best-effort): {exc.message}"
                                + (f" ({exc.hint})" if exc.hint else ""))
        log.warning("%s", result.warning)
        ctx.ci.annotate("warning", result.warning, title="model mirror")
    data = result.to_json()
    _write_result(args, data)
    return Outcome(data=data, text=_text(data), exit_code=0)


def _write_result(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.result_file:
        from cicd_tools.support.files import write_json_atomic
        from cicd_tools.support.outpath import OutputRefused

        try:
            write_json_atomic(Path(args.result_file), data)
        except OutputRefused:
            raise
        except OSError as exc:
            raise UsageError(f"cannot write the result file {args.result_file}: {exc.strerror or exc}",
                             hint="Pass a --result-file in a writable folder.", code="ResultFileUnwritable") from None


def _text(data: dict[str, Any]) -> str:
    from cicd_tools.support.cisafe import shown

    if not data["ok"]:
        return f"WARNING {data['warning']}"
    verb = "already registered as" if data["reused"] else "registered"
    lines = [f"{data['sourceRunId']}: {verb} {data['modelName']}:{data['modelVersion']}",
             f"  asset id:     {data['modelAssetId']}",
             f"  content hash: {data['contentHash']} ({len(data['files'])} file(s))"]
    if data["skipped"]:
        lines.append(f"  left out:     {', '.join(shown(s) for s in data['skipped'])}")
    for entry in data.get("skippedUnsafe") or []:
        lines.append(f"  not uploaded: {shown(entry['path'])} ({entry['reason']}: {shown(entry['detail'])})")
    if data["codeId"]:
        lines.append(f"  code:         {data['codeId']}")
    return "\n".join(lines)
