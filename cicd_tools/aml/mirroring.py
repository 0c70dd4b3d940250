"""``model mirror`` as an operation: a typed request in, a typed result out (no argparse, no printing).

The result is filled as facts become known (the training job and its code id before the download), so a caller
that catches the error still holds every fact that was established: evidence first.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import CicdError, ConfigError, EnvironmentProblem, UsageError

if TYPE_CHECKING:
    from cicd_tools.aml.jobs_arm import WorkspaceJobs
    from cicd_tools.aml.models import Lineage

log = logging.getLogger("cicd_tools.model")


@dataclass(frozen=True)
class MirrorRequest:
    """Which checkpoint (one of ``job``, ``adf_run_id``, ``from_path``) becomes a version of model ``name``."""

    workspace: Settings  # resolved into a WorkspaceRef when the mirror needs it (after the inputs are checked)
    name: str | None
    job: str | None = None
    adf_run_id: str | None = None
    from_path: Path | None = None
    run_id: str | None = None
    validation_job: str | None = None
    factory: str | None = None
    output_name: str = "model"
    excludes: tuple[str, ...] = ()
    include_training_state: bool = False
    tags: tuple[str, ...] = ()
    new_version: bool = False


@dataclass(frozen=True)
class MirrorError:
    code: str
    message: str
    exit_code: int


@dataclass
class MirrorResult:
    """What the mirror established (``to_json`` is the command's fixed JSON contract)."""

    model_name: str | None
    ok: bool = False
    model_version: str | None = None
    model_asset_id: str | None = None
    reused: bool = False
    source_run_id: str | None = None
    training_job: str | None = None
    code_id: str | None = None
    content_hash: str | None = None
    files: list[Any] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skipped_unsafe: list[dict[str, str]] = field(default_factory=list)  # outside the folder, loops, special files
    warning: str | None = None
    error: MirrorError | None = None

    def failed(self, exc: CicdError) -> None:
        from cicd_tools.support.redact import redact

        self.ok = False
        self.error = MirrorError(exc.code or type(exc).__name__, redact(exc.message), int(exc.exit_code))

    def to_json(self) -> dict[str, Any]:
        error = None if self.error is None else {"code": self.error.code, "message": self.error.message,
                                                 "exitCode": self.error.exit_code}
        return {"ok": self.ok, "modelName": self.model_name, "modelVersion": self.model_version,
                "modelAssetId": self.model_asset_id, "reused": self.reused, "sourceRunId": self.source_run_id,
                "trainingJob": self.training_job, "codeId": self.code_id, "contentHash": self.content_hash,
                "files": self.files, "skipped": self.skipped, "skippedUnsafe": self.skipped_unsafe,
                "warning": self.warning, "error": error}


def check_request(request: MirrorRequest) -> None:
    """Refuse contradicting inputs before any Azure call. Raises: ConfigError, UsageError."""
    from cicd_tools.aml.models import parse_extra_tags, validate_model_name, validate_run_id

    if not request.name:
        raise ConfigError("model mirror needs the model name: pass --name or set CICD_MODEL_NAME")
    validate_model_name(request.name)
    if request.from_path is not None and not request.run_id:
        raise UsageError("--from-path needs --run-id: the run that wrote the folder is the idempotency key",
                         hint="Pass --run-id with the trainer's or scheduler's run id.", code="RunIdMissing")
    if request.from_path is None and request.run_id:
        raise UsageError("--run-id goes with --from-path only (a job's name is its run id)", code="RunIdUnexpected")
    if request.validation_job and not request.job:
        raise UsageError("--validation-job goes with --job only", code="ValidationJobUnexpected")
    if request.run_id:
        validate_run_id(request.run_id)
    parse_extra_tags(list(request.tags))


def mirror_checkpoint(request: MirrorRequest, credential: Callable[[], Any], result: MirrorResult) -> MirrorResult:
    """Register the checkpoint as a model version (idempotent); fills ``result`` as it goes and returns it.

    ``credential`` builds the credential once the local inputs are staged.

    Raises: CicdError (``result`` keeps what was established), EnvironmentProblem when an SDK cannot be imported.
    """
    try:
        _run(request, credential, result)
    except ImportError as exc:  # a job image or agent without the Azure SDKs: an environment problem, not a bug
        raise EnvironmentProblem(f"model mirror cannot import {exc.name or exc}: {exc}",
                                 hint="pip install cicd-tools (it brings azure-ai-ml, azure-identity and "
                                      "azure-storage-blob), then `cicd-tools doctor`.",
                                 code="SdkImportFailed") from None
    return result


def _run(request: MirrorRequest, credential_factory: Callable[[], Any], data: MirrorResult) -> None:
    from cicd_tools.aml.checkpoints import DEFAULT_EXCLUDES, stage_checkpoint
    from cicd_tools.aml.models import Lineage as LineageRecord
    from cicd_tools.aml.models import Registry, WorkspaceModels, mirror, parse_extra_tags

    assert request.name is not None
    excludes = [*([] if request.include_training_state else DEFAULT_EXCLUDES), *request.excludes]
    lineage: Lineage | None = None
    if request.from_path is not None:
        assert request.run_id is not None  # check_request: --from-path needs --run-id
        lineage = LineageRecord(source_run_id=request.run_id)
        staged = stage_checkpoint(request.from_path, excludes=excludes)  # before any Azure call: fail fast
    from cicd_tools.codeassets.workspace import WorkspaceRef

    workspace = WorkspaceRef.from_settings(request.workspace)
    credential = credential_factory()
    with WorkspaceModels(workspace, credential) as models, tempfile.TemporaryDirectory(prefix="cicd-model-") as tmp:
        if request.from_path is None:
            lineage = _job_source(request, models, credential, Path(tmp), data)
            staged = stage_checkpoint(Path(tmp), excludes=excludes)
        assert lineage is not None
        data.source_run_id, data.training_job, data.code_id = (lineage.source_run_id, lineage.training_job,
                                                              lineage.code_id)
        data.content_hash, data.files, data.skipped = staged.content_hash, staged.files, list(staged.skipped)
        data.skipped_unsafe = [entry.to_dict() for entry in staged.unsafe]
        for entry in staged.unsafe:
            log.warning("not uploaded: %s", entry)
        log.info("staged %d file(s) of %s%s, content hash %s; left out: %s", len(staged.entries),
                 lineage.source_run_id, f" ({staged.checkpoint})" if staged.checkpoint else "",
                 staged.content_hash, ", ".join(staged.skipped) or "nothing")

        def ml_client() -> Any:
            from cicd_tools.codeassets.sdk import build_ml_client

            return build_ml_client(credential, workspace)

        done = mirror(Registry(models, ml_client, credential), request.name, staged, lineage,
                      new_version=request.new_version, extra_tags=parse_extra_tags(list(request.tags)))
    data.ok, data.model_name, data.model_version = True, done.model.name, done.model.version
    data.model_asset_id, data.reused = done.model.id, done.reused


def _job_source(request: MirrorRequest, jobs: WorkspaceJobs, credential: Any, target: Path,
                data: MirrorResult) -> Lineage:
    """Download the training job's output into ``target``; the lineage (validation included) of that job."""
    from cicd_tools.aml.model_sources import (
        download_output,
        job_lineage,
        read_metrics,
        reads_output_of,
        require_completed,
        split_training_and_validation,
    )
    from cicd_tools.aml.models import Lineage as LineageRecord

    if request.job:
        training = jobs.get_job(request.job)
        validation = jobs.get_job(request.validation_job) if request.validation_job else None
        if validation is not None and not reads_output_of(validation, request.job, request.output_name):
            raise UsageError(f"job {request.validation_job} does not validate {request.job}: none of its inputs is "
                             f"azureml://jobs/{request.job}/outputs/{request.output_name}",
                             hint="Pass the validation job that read this training job's output, or leave "
                                  "--validation-job out.", code="NotAValidationOfTheJob")
    else:
        from cicd_tools.aml.adf_jobs import jobs_of_adf_run

        assert request.adf_run_id is not None
        submitted = jobs_of_adf_run(request.factory, request.adf_run_id, jobs.workspace, credential,
                                    direct="cicd-tools model mirror --job NAME")
        docs = [jobs.get_job(job.name) for job in submitted]
        training, validation = split_training_and_validation(docs, request.output_name)
        if validation is None:
            log.warning("run %s submitted no job that validates %s; mirrored without validation tags",
                        request.adf_run_id, training.get("name"))
    data.source_run_id = data.training_job = training.get("name")
    data.code_id = (training.get("properties") or {}).get("codeId")
    require_completed(training, "training")
    metrics: dict[str, str] = {}
    if validation is not None:
        require_completed(validation, "validation")
        metrics = read_metrics(jobs, validation, credential)
    lineage = job_lineage(training, validation, metrics)
    download_output(jobs, training, request.output_name, credential, target)
    return LineageRecord(source_run_id=lineage.training_job, training_job=lineage.training_job,
                         code_id=lineage.code_id, validation_job=lineage.validation_job,
                         validation_metrics=lineage.validation_metrics, adf_run_id=request.adf_run_id)
