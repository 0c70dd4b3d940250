"""Where a mirrored checkpoint comes from when it is an Azure ML job's output (``--job`` / ``--adf-run-id``).

A training job's named output (``model`` by default) lives on a datastore at
``azureml://datastores/{store}/paths/{path}``; it is downloaded with the caller's token (CI holds a blob
data role on the workspace storage, never a key). A validation job is one whose input reads that output
(``azureml://jobs/{training}/outputs/{output}``); its ``metrics.json`` (any output) gives the metrics.
Only completed jobs are mirrored: a checkpoint whose validation did not pass is not a model.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from cicd_tools.aml.jobs_arm import WorkspaceJobs, datastore_container_url
from cicd_tools.support.errors import RunFailed, UsageError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
_OUTPUT_URI_RE = re.compile(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.*)$")
_JOB_OUTPUT_RE = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<out>[^/]+)/?$")


@dataclass(frozen=True)
class JobLineage:
    """The training job (and its validation, when known) a checkpoint comes from."""

    training_job: str
    code_id: str | None
    validation_job: str | None = None
    validation_metrics: dict[str, str] = field(default_factory=dict)


def _props(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job.get("properties") or {})


def require_completed(job: dict[str, Any], role: str) -> None:
    """Raises RunFailed (exit 4) for a job that failed or was canceled, UsageError for one still running."""
    status = str(_props(job).get("status") or "Unknown")
    name = str(job.get("name"))
    if status == "Completed":
        return
    if status in ("Failed", "Canceled", "NotResponding"):
        raise RunFailed(f"{role} job {name} ended {status}: its checkpoint is not mirrored",
                        hint=f"Read the job's log (`az ml job show -n {name}`); mirror a run that completed.",
                        code=f"Job{status}")
    raise UsageError(f"{role} job {name} is {status}, not Completed yet: nothing to mirror",
                     hint="Mirror after the job has completed (the factory's mirror step runs after validation).",
                     code="JobNotFinished")


def output_location(job: dict[str, Any], output_name: str) -> tuple[str, str]:
    """(datastore, path) of a job's named output. Raises UsageError when the job has no such output."""
    outputs = _props(job).get("outputs") or {}
    item = outputs.get(output_name)
    if not isinstance(item, dict):
        have = ", ".join(sorted(outputs)) or "none"
        raise UsageError(f"job {job.get('name')} has no output named {output_name!r} (its outputs: {have})",
                         hint="Pass the output that holds the checkpoint with --output-name.", code="OutputNotFound")
    uri = str(item.get("uri") or f"azureml://datastores/workspaceblobstore/paths/azureml/{job.get('name')}/"
              f"{output_name}/")
    match = _OUTPUT_URI_RE.match(uri)
    if match is None:
        raise UsageError(f"output {output_name} of job {job.get('name')} is at {uri}, not on a datastore path",
                         code="OutputNotOnDatastore")
    return match["store"], match["path"].strip("/")


def _container(jobs: WorkspaceJobs, store: str, credential: TokenCredential) -> Any:
    from azure.storage.blob import ContainerClient

    doc = jobs.get_datastore(store)
    if doc is None:
        raise UsageError(f"datastore {store} does not exist in workspace {jobs.workspace.workspace}",
                         code="DatastoreNotFound")
    return ContainerClient.from_container_url(datastore_container_url(doc), credential=credential)


def download_output(jobs: WorkspaceJobs, job: dict[str, Any], output_name: str, credential: TokenCredential,
                    target: Path) -> int:
    """Download a job's output folder into ``target``. Returns the file count; raises UsageError when empty."""
    from azure.core.exceptions import AzureError as SdkAzureError

    from cicd_tools.codeassets.workspace import workspace_error

    store, path = output_location(job, output_name)
    prefix = f"{path}/" if path else ""
    count = 0
    try:
        with _container(jobs, store, credential) as container:
            for blob in container.list_blobs(name_starts_with=prefix):
                rel = PurePosixPath(blob.name[len(prefix):])
                if not rel.parts or ".." in rel.parts or rel.is_absolute():
                    continue
                local = target.joinpath(*rel.parts)
                local.parent.mkdir(parents=True, exist_ok=True)
                with open(local, "wb") as fh:
                    container.download_blob(blob.name, max_concurrency=4).readinto(fh)
                count += 1
    except SdkAzureError as exc:
        raise workspace_error(exc, what=f"downloading output {output_name} of job {job.get('name')}") from None
    if count == 0:
        raise UsageError(f"output {output_name} of job {job.get('name')} is empty ({store}:{prefix})",
                         code="OutputEmpty")
    log.info("downloaded %d file(s) of job %s output %s", count, job.get("name"), output_name)
    return count


def reads_output_of(job: dict[str, Any], training: str, output_name: str) -> bool:
    """Whether one of ``job``'s inputs is ``azureml://jobs/{training}/outputs/{output_name}``."""
    for item in (_props(job).get("inputs") or {}).values():
        match = _JOB_OUTPUT_RE.match(str((item or {}).get("uri") or ""))
        if match and match["job"] == training and match["out"] == output_name:
            return True
    return False


def split_training_and_validation(docs: list[dict[str, Any]], output_name: str
                                  ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The one training job among ``docs`` (it has the named output), and the job validating it, if any."""
    readers = {str(d.get("name")): d for d in docs}
    trainers = [d for d in docs if output_name in (_props(d).get("outputs") or {})
                and not any(reads_output_of(d, other, output_name) for other in readers)]
    if not trainers:
        raise UsageError(f"no job of the run has an output named {output_name!r}: {', '.join(readers)}",
                         hint="Pass --output-name, or mirror one job with --job NAME.", code="NoTrainingJob")
    if len(trainers) > 1:
        names = ", ".join(str(t.get("name")) for t in trainers)
        raise UsageError(f"the run submitted several training jobs ({names}); which one is the model is ambiguous",
                         hint="Mirror one of them with --job NAME.", code="AmbiguousTrainingJob")
    training = trainers[0]
    validators = [d for d in docs if reads_output_of(d, str(training.get("name")), output_name)]
    return training, (validators[-1] if validators else None)


def read_metrics(jobs: WorkspaceJobs, job: dict[str, Any], credential: TokenCredential) -> dict[str, str]:
    """Scalar entries of the first ``metrics.json`` among the job's outputs (empty when there is none)."""
    from azure.core.exceptions import AzureError as SdkAzureError

    for name in sorted(_props(job).get("outputs") or {}):
        try:
            store, path = output_location(job, name)
            with _container(jobs, store, credential) as container:
                raw = container.download_blob(f"{path}/{METRICS_FILE}".lstrip("/")).readall()
        except (UsageError, SdkAzureError):
            continue
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
            continue
        if isinstance(doc, dict):
            return {str(k): json.dumps(v) if isinstance(v, bool) else str(v) for k, v in doc.items()
                    if isinstance(v, (int, float, str, bool))}
    return {}


def job_lineage(training: dict[str, Any], validation: dict[str, Any] | None,
                metrics: dict[str, str] | None = None) -> JobLineage:
    return JobLineage(training_job=str(training.get("name")), code_id=_props(training).get("codeId"),
                      validation_job=None if validation is None else str(validation.get("name")),
                      validation_metrics=dict(metrics or {}))
