"""Which Azure ML jobs did a Data Factory run submit? Its activity runs say, child pipeline runs included.

A WebActivity that ``PUT``s ``…/workspaces/{ws}/jobs/{name}`` submitted job ``name`` (its recorded
``input.url`` names it); an ExecutePipeline activity's ``output.pipelineRunId`` is a child run whose
activities are searched the same way. Uses azure-mgmt-datafactory's ``pipeline_runs.get`` and
``activity_runs.query_by_pipeline_run`` (a time window is mandatory: it is widened around the run, and
every continuation token is followed). The client is a parameter; ``commands/`` builds it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cicd_tools.support.errors import UsageError

log = logging.getLogger(__name__)

_JOB_URL_RE = re.compile(r"/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+/jobs/(?P<job>[^/?#]+)"
                         r"/?(?:[?#]|$)", re.IGNORECASE)
WINDOW_MARGIN = dt.timedelta(days=1)
MAX_DEPTH = 10
MAX_PAGES = 100


@dataclass(frozen=True)
class SubmittedJob:
    """One job a run submitted: its name and where the submission was seen."""

    name: str
    pipeline_run_id: str
    pipeline_name: str | None
    activity: str
    asset_name: str | None = None  # the submitting run's ``assetName`` parameter, when it has one


def job_name_from_activity(activity_type: str | None, activity_input: Any) -> str | None:
    """The job a WebActivity's recorded input PUTs, or None."""
    if activity_type != "WebActivity" or not isinstance(activity_input, dict):
        return None
    if str(activity_input.get("method") or "").upper() != "PUT":
        return None
    match = _JOB_URL_RE.search(str(activity_input.get("url") or ""))
    return match["job"] if match else None


def _utc(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return None


def jobs_submitted_by_run(
    client: Any, resource_group: str, factory: str, run_id: str,
    *, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[SubmittedJob]:
    """Every job the run ``run_id`` (and its child runs) submitted, in activity start order.

    Raises: UsageError when the run does not exist; azure-core errors pass through for the caller to classify.
    """
    from azure.core.exceptions import ResourceNotFoundError

    found: list[SubmittedJob] = []
    seen_runs: set[str] = set()
    pending: list[tuple[str, int]] = [(run_id, 0)]
    while pending:
        current, depth = pending.pop(0)
        if current in seen_runs or depth > MAX_DEPTH:
            continue
        seen_runs.add(current)
        try:
            run = client.pipeline_runs.get(resource_group, factory, current)
        except ResourceNotFoundError:
            if current == run_id:
                raise UsageError(f"pipeline run {run_id} does not exist in factory {factory}",
                                 hint="Pass the run id the ADF monitor (or the step that started the run) shows.",
                                 code="PipelineRunNotFound") from None
            log.warning("child pipeline run %s not found; skipped", current)
            continue
        for activity in _activity_runs(client, resource_group, factory, current, run, now()):
            name = job_name_from_activity(activity.activity_type, activity.input)
            if name and all(j.name != name for j in found):
                parameters = getattr(run, "parameters", None) or {}
                asset = parameters.get("assetName") if isinstance(parameters, dict) else None
                found.append(SubmittedJob(name, current, getattr(run, "pipeline_name", None),
                                          str(activity.activity_name), asset if isinstance(asset, str) else None))
            output = activity.output if isinstance(activity.output, dict) else {}
            child = output.get("pipelineRunId")
            if activity.activity_type == "ExecutePipeline" and isinstance(child, str) and child:
                pending.append((child, depth + 1))
    return found


def _activity_runs(client: Any, resource_group: str, factory: str, run_id: str, run: Any,
                   now: dt.datetime) -> list[Any]:
    from azure.mgmt.datafactory.models import RunFilterParameters

    start = _utc(getattr(run, "run_start", None)) or now
    end = _utc(getattr(run, "run_end", None)) or now
    after, before = start - WINDOW_MARGIN, max(end, now) + WINDOW_MARGIN
    token: str | None = None
    items: list[Any] = []
    for _ in range(MAX_PAGES):
        page = client.activity_runs.query_by_pipeline_run(
            resource_group, factory, run_id,
            RunFilterParameters(last_updated_after=after, last_updated_before=before, continuation_token=token))
        items.extend(page.value or [])
        token = page.continuation_token
        if not token:
            break
    items.sort(key=lambda a: _utc(getattr(a, "activity_run_start", None)) or now)
    return items


def jobs_of_adf_run(factory: str | None, run_id: str, workspace: Any, credential: Any, *, direct: str) -> list[Any]:
    """The Azure ML jobs a Data Factory run and its child runs submitted (``SubmittedJob``), in start order.

    ``direct`` names the command that takes a job instead, for the hint when the run submitted none.
    Raises: ConfigError (no factory), UsageError (not a run id, or no such run), ContractViolation (no jobs).
    """
    from cicd_tools.adf.client import datafactory_client
    from cicd_tools.support.errors import ConfigError, ContractViolation

    if not factory:
        raise ConfigError("--adf-run-id needs the factory: pass --factory or set CICD_FACTORY")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,100}", run_id):
        raise UsageError(f"--adf-run-id {run_id!r} is not a pipeline run id (a GUID)",
                         hint="Pass the pipeline run id the ADF monitor (or the step that started the run) shows.")
    with datafactory_client(credential, workspace.subscription_id, workspace.arm_endpoint) as client:
        submitted: list[Any] = jobs_submitted_by_run(client, workspace.resource_group, factory, run_id)
    for job in submitted:
        logging.getLogger("cicd_tools.aml").info("run %s submitted job %s (activity %s of %s)", run_id, job.name,
                                                 job.activity,
                 job.pipeline_name or job.pipeline_run_id)
    if not submitted:
        raise ContractViolation(f"pipeline run {run_id} submitted no Azure ML job (no WebActivity PUT to "
                                "…/workspaces/{ws}/jobs/{name} in it or its child runs)",
                                hint=f"Check the run id; `{direct}` takes a job directly.", code="NoJobsInRun")
    return submitted
