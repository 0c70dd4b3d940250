"""Mirror a run's checkpoint into the workspace as a governed ``custom_model`` version, exactly once.

Why not ``create_or_update(Model(path=<local folder>))`` alone: the SDK then uploads every time (a
replay makes a new version with a new copy), and it uploads with the datastore's account key
(``listSecrets``) to ``https://{account}.blob.{suffix}``, which fails on storage with shared key
disabled. So:

1. the staged files' content hash and the run id are looked up first, by tag
   (``GET models/{name}/versions?tags=cicd.sourceRunId=R``, the REST list filter): the same content
   returns the existing version and uploads nothing; other content for the same run is refused
   (``ContractViolation``, exit 5) unless a new version is asked for;
2. on a miss the files are uploaded with the caller's token to the default datastore at a
   content-addressed path (``cicd-models/{name}/{hash}/``);
3. the version is registered through azure-ai-ml with that ``azureml://datastores/…`` path, so the SDK
   uploads nothing itself; ``result.version`` is the truth.

Clients are parameters (``commands/model.py`` builds them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cicd_tools.aml.checkpoints import StagedModel
from cicd_tools.aml.jobs_arm import JOB_API_VERSION, WorkspaceJobs, datastore_container_url
from cicd_tools.codeassets.sdk import VersionConflict, installed_sdk_version, translate_sdk_error
from cicd_tools.support.errors import CicdError, ContractViolation, UsageError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

DATASTORE = "workspaceblobstore"
UPLOAD_ROOT = "cicd-models"
TAG_RUN, TAG_HASH, TAG_JOB = "cicd.sourceRunId", "cicd.contentHash", "cicd.trainingJob"
TAG_CODE_ID, TAG_CODE_NAME, TAG_CODE_VERSION = "cicd.codeId", "cicd.codeAsset", "cicd.codeVersion"
TAG_VALIDATION, TAG_METRIC, TAG_ADF_RUN = "cicd.validationJob", "cicd.validation.", "cicd.adfRunId"
TAG_CHECKPOINT = "cicd.checkpoint"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+\-]{0,254}$")
_CODE_ID_RE = re.compile(r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)
_MAX_PAGES = 50


@dataclass(frozen=True)
class Lineage:
    """Where the checkpoint came from: the tags that make the version governed."""

    source_run_id: str
    training_job: str | None = None
    code_id: str | None = None
    validation_job: str | None = None
    validation_metrics: Mapping[str, str] = field(default_factory=dict)
    adf_run_id: str | None = None


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version, as the workspace (or the SDK) returned it."""

    name: str
    version: str
    id: str
    tags: Mapping[str, str]


@dataclass(frozen=True)
class MirrorResult:
    model: ModelVersionInfo
    reused: bool
    uploaded: int  # files uploaded by this call (0 when reused)


def validate_model_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(f"{name!r} is not a valid Azure ML model name (letters, digits, '-', '_'; max 255; "
                         "starts with a letter or digit)", code="InvalidModelName")
    return name


def validate_run_id(run_id: str) -> str:
    """Run ids are tag values the list filter matches, so ',' '=' and spaces cannot be in them."""
    if not _RUN_ID_RE.match(run_id):
        raise UsageError(f"{run_id!r} is not a usable run id (letters, digits and . _ : @ / + -; max 255)",
                         hint="Pass the run id the trainer or scheduler assigned to --run-id.", code="InvalidRunId")
    return run_id


def parse_extra_tags(values: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs from ``--tag``. Raises UsageError for a malformed pair or a reserved ``cicd.`` key."""
    tags: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--tag {value!r} is not KEY=VALUE", hint="Write it as --tag team=vision.",
                             code="MalformedTag")
        if key.strip().lower().startswith("cicd."):
            raise UsageError(f"--tag {key.strip()}: tags starting with 'cicd.' are the mirror's own lineage tags",
                             hint="Pick another key.", code="ReservedTag")
        tags[key.strip()] = text
    return tags


def model_tags(lineage: Lineage, staged: StagedModel) -> dict[str, str]:
    """The governed tags: run, content hash, training job, code version, validation and its metrics."""
    tags = {TAG_RUN: lineage.source_run_id, TAG_HASH: staged.content_hash}
    if staged.checkpoint:
        tags[TAG_CHECKPOINT] = staged.checkpoint
    if lineage.training_job:
        tags[TAG_JOB] = lineage.training_job
    if lineage.code_id:
        tags[TAG_CODE_ID] = lineage.code_id
        match = _CODE_ID_RE.search(lineage.code_id)
        if match:
            tags[TAG_CODE_NAME], tags[TAG_CODE_VERSION] = match["name"], match["version"]
    if lineage.adf_run_id:
        tags[TAG_ADF_RUN] = lineage.adf_run_id
    if lineage.validation_job:
        tags[TAG_VALIDATION] = lineage.validation_job
    for key, value in sorted(lineage.validation_metrics.items()):
        tags[TAG_METRIC + key] = value
    return tags


class WorkspaceModels(WorkspaceJobs):
    """Model-version reads over plain ARM REST (the SDK's ``models.list`` has no tag filter)."""

    def __enter__(self) -> WorkspaceModels:
        return self

    def versions_for_run(self, name: str, run_id: str) -> list[ModelVersionInfo]:
        """Versions of model ``name`` tagged with ``run_id``, newest first. Raises: AzureError (classified)."""
        url: str | None = (
            f"{self.workspace.arm_endpoint}{self.workspace.path}/models/{name}/versions"
            f"?api-version={JOB_API_VERSION}&tags={quote(f'{TAG_RUN}={run_id}', safe='')}"
            "&$orderBy=createdtime%20desc"
        )
        found: list[ModelVersionInfo] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            doc = self._get_json(url, what=f"listing versions of model {name}", missing_ok=True)
            if doc is None:  # an unknown model (if the service answers 404 for it), or no such workspace
                self._require_workspace()
                return []
            for item in doc.get("value") or []:
                props = item.get("properties") or {}
                tags = {str(k): str(v) for k, v in (props.get("tags") or {}).items()}
                if tags.get(TAG_RUN) == run_id:  # the filter is the service's; check it anyway
                    found.append(ModelVersionInfo(name, str(item.get("name")), str(item.get("id")), tags))
            url = doc.get("nextLink") or None
        return found


    def _require_workspace(self) -> None:
        url = f"{self.workspace.arm_endpoint}{self.workspace.path}?api-version={JOB_API_VERSION}"
        if self._get_json(url, what=f"reading workspace {self.workspace.workspace}", missing_ok=True) is None:
            raise UsageError(f"workspace {self.workspace.workspace} does not exist in resource group "
                             f"{self.workspace.resource_group} (subscription {self.workspace.subscription_id})",
                             hint="Check --workspace/CICD_WORKSPACE, --resource-group/CICD_RESOURCE_GROUP and "
                                  "--subscription-id/CICD_SUBSCRIPTION_ID.", code="WorkspaceNotFound")


def upload_staged(container: Any, prefix: str, staged: StagedModel) -> int:
    """Upload every staged file under ``prefix`` (a ContainerClient of the datastore). Returns the count."""
    for entry in staged.entries:
        with open(entry.source, "rb") as data:
            container.upload_blob(f"{prefix}{entry.rel}", data, overwrite=True, length=entry.size, max_concurrency=4)
    return len(staged.entries)


def register_model(ml_client: Any, name: str, path: str, tags: Mapping[str, str], description: str) -> ModelVersionInfo:
    """``ml_client.models.create_or_update`` with a datastore path; the returned version is the truth."""
    try:
        from azure.ai.ml.entities import Model
    except Exception as exc:  # a broken install surfaces at import
        from cicd_tools.codeassets.sdk import _import_error

        raise _import_error(exc) from None
    try:
        result = ml_client.models.create_or_update(
            Model(name=name, type="custom_model", path=path, tags=dict(tags), description=description))
    except Exception as exc:
        error = translate_sdk_error(exc, name=name, version="(next)")
        if isinstance(error, VersionConflict):  # another writer took the version the SDK picked
            raise ContractViolation(f"model {name}: the next version was registered concurrently with other "
                                    "content; nothing was registered", code=error.code,
                                    hint="Re-run `cicd-tools model mirror`: it picks the next free version.") from None
        raise error from None
    version, arm_id = getattr(result, "version", None), getattr(result, "id", None)
    if version is None or not arm_id:
        raise CicdError(f"azure-ai-ml {installed_sdk_version()} returned a model without a version or id "
                        f"(version={version!r}, id={arm_id!r})", code="SdkResultIncomplete")
    return ModelVersionInfo(str(getattr(result, "name", None) or name), str(version), str(arm_id),
                            {str(k): str(v) for k, v in (getattr(result, "tags", None) or {}).items()})


@dataclass
class Registry:
    """What ``mirror`` needs from Azure, injectable for tests: lookup, upload, register."""

    models: WorkspaceModels
    ml_client_factory: Callable[[], Any]
    credential: TokenCredential

    def container(self) -> Any:
        """The default datastore's container, reached with the caller's token (never the account key)."""
        from azure.storage.blob import ContainerClient

        store = self.models.get_datastore(DATASTORE)
        if store is None:
            raise UsageError(f"workspace {self.models.workspace.workspace} has no {DATASTORE} datastore",
                             code="DatastoreNotFound")
        return ContainerClient.from_container_url(datastore_container_url(store), credential=self.credential)


def _same_content(versions: list[ModelVersionInfo], staged: StagedModel) -> ModelVersionInfo | None:
    return next((v for v in versions if v.tags.get(TAG_HASH) == staged.content_hash), None)


def mirror(registry: Registry, name: str, staged: StagedModel, lineage: Lineage, *,
           new_version: bool = False, extra_tags: Mapping[str, str] | None = None) -> MirrorResult:
    """Register ``staged`` as a version of ``name`` once per (run, content); ``extra_tags`` go on a new version.

    Raises: ContractViolation (the run is registered with other content and ``new_version`` is off),
    AzureError / EnvironmentProblem from the workspace or the SDK.
    """
    from azure.core.exceptions import AzureError as SdkAzureError

    from cicd_tools.codeassets.workspace import workspace_error

    existing = registry.models.versions_for_run(name, lineage.source_run_id)
    same = _same_content(existing, staged)
    if same is not None:
        log.info("model %s:%s already holds run %s with this content; nothing uploaded",
                 same.name, same.version, lineage.source_run_id)
        return MirrorResult(same, reused=True, uploaded=0)
    if existing and not new_version:
        other = existing[0]
        raise ContractViolation(
            f"run {lineage.source_run_id} is already registered as {other.name}:{other.version} with content hash "
            f"{other.tags.get(TAG_HASH)}; these files hash to {staged.content_hash}. Nothing was uploaded",
            hint="Pass --new-version to register this content as another version of the run, or check that "
                 "--run-id / the source names the run you mean.", code="RunMirroredWithOtherContent")
    prefix = f"{UPLOAD_ROOT}/{name}/{staged.content_hash}/"
    log.info("uploading %d file(s) (%d bytes) to datastore %s at %s", len(staged.entries), staged.total_bytes,
             DATASTORE, prefix)
    try:
        with registry.container() as container:
            uploaded = upload_staged(container, prefix, staged)
    except SdkAzureError as exc:
        raise workspace_error(exc, what=f"uploading the model files to datastore {DATASTORE}") from None
    # A concurrent mirror of the same run may have registered while this one uploaded: look once more, so
    # the window for a duplicate shrinks to the SDK's next-version read and PUT.
    same = _same_content(registry.models.versions_for_run(name, lineage.source_run_id), staged)
    if same is not None:
        log.info("model %s:%s was registered for run %s meanwhile; reusing it", same.name, same.version,
                 lineage.source_run_id)
        return MirrorResult(same, reused=True, uploaded=uploaded)
    path = f"azureml://datastores/{DATASTORE}/paths/{prefix}"
    description = (f"Run {lineage.source_run_id}" + (f", {staged.checkpoint}" if staged.checkpoint else "")
                   + " mirrored by cicd-tools model mirror.")
    tags = {**(extra_tags or {}), **model_tags(lineage, staged)}
    model = register_model(registry.ml_client_factory(), name, path, tags, description)
    log.info("registered model %s:%s (%s)", model.name, model.version, model.id)
    return MirrorResult(model, reused=False, uploaded=uploaded)
