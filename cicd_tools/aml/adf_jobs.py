"""Which Azure ML jobs did a Data Factory run submit? Its activity runs say, child pipeline runs included.

A WebActivity that ``PUT``s ``…/workspaces/{ws}/jobs/{name}`` submitted job ``name`` (its recorded
``input.url`` names it, and the workspace); an ExecutePipeline activity's ``output.pipelineRunId`` is a child
run whose activities are searched the same way. The calls are ``FactoryApi``'s (``pipelineruns/{id}`` and
``queryActivityruns``: a time window around the run, every continuation token followed), made through one
``ArmCalls``: transient failures are retried within the caller's deadline like every other ADF call.
``adf run``'s cancel, ``aml verify --adf-run-id`` and ``model mirror --adf-run-id`` all use this lookup.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cicd_tools.adf.client import (
    ArmCalls,
    FactoryApi,
    FactoryNotFound,
    FactoryRef,
    MgmtDataFactory,
    parse_time,
    query_activity_runs,
)
from cicd_tools.support.errors import UsageError

log = logging.getLogger(__name__)

_JOB_URL_RE = re.compile(r"(?P<ws>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                         r"Microsoft\.MachineLearningServices/workspaces/[^/]+)/jobs/(?P<job>[^/?#]+)"
                         r"/?(?:[?#]|$)", re.IGNORECASE)
_POINTER_URL_RE = re.compile(r"/code-assets/[^/?#]+/latest\.json(?:[?#]|$)", re.IGNORECASE)
MAX_DEPTH = 10


@dataclass(frozen=True)
class SubmittedJob:
    """One job a run submitted: its name and where the submission was seen."""

    name: str
    pipeline_run_id: str
    pipeline_name: str | None
    activity: str
    asset_name: str | None = None  # the submitting run's ``assetName`` parameter, when it has one
    workspace_path: str | None = None  # the ARM id of the workspace the job was PUT to
    pointer_read: str | None = None  # the assetId the submitting run read from the pointer (its activity output)


def job_name_from_activity(activity_type: str | None, activity_input: Any) -> str | None:
    """The job a WebActivity's recorded input PUTs, or None."""
    if activity_type != "WebActivity" or not isinstance(activity_input, dict):
        return None
    if str(activity_input.get("method") or "").upper() != "PUT":
        return None
    match = _JOB_URL_RE.search(str(activity_input.get("url") or ""))
    return match["job"] if match else None


def job_workspace_from_activity(activity_input: Any) -> str | None:
    """The ARM id of the workspace a job-submitting WebActivity PUT to, or None."""
    if not isinstance(activity_input, dict):
        return None
    match = _JOB_URL_RE.search(str(activity_input.get("url") or ""))
    return match["ws"] if match else None


def pointer_read_by(activities: list[dict[str, Any]]) -> str | None:
    """The ``assetId`` a run's pointer read returned: a WebActivity GET of ``code-assets/{asset}/latest.json``
    whose output is the pointer document. Seen through ARM (``queryActivityruns``), so it needs no data-plane
    access: what the factory read, when it read it."""
    for activity in activities:
        given, output = activity.get("input"), activity.get("output")
        if activity.get("activityType") != "WebActivity" or not isinstance(given, dict) or not isinstance(output, dict):
            continue
        if str(given.get("method") or "GET").upper() != "GET" or not _POINTER_URL_RE.search(str(given.get("url"))):
            continue
        if isinstance(output.get("assetId"), str) and output["assetId"]:
            return str(output["assetId"])
    return None


def jobs_of_run(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, run_id: str, *, deadline: float | None = None,
                now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> list[SubmittedJob]:
    """Every job the run ``run_id`` (and its child runs) submitted, in activity start order.

    Raises: UsageError when the run does not exist; CicdError (classified) when a call fails for good, and
    DeadlineReached when calls keep failing transiently until ``deadline`` (a ``calls.clock()`` value).
    """
    found: list[SubmittedJob] = []
    seen_runs: set[str] = set()
    pending: list[tuple[str, int]] = [(run_id, 0)]
    while pending:
        current, depth = pending.pop(0)
        if current in seen_runs or depth > MAX_DEPTH:
            continue
        seen_runs.add(current)
        try:
            run = calls(f"get pipeline run {current}", functools.partial(api.get_run, ref, current),
                        deadline=deadline)
        except FactoryNotFound:
            if current == run_id:
                raise UsageError(f"pipeline run {run_id} does not exist in factory {ref.name}",
                                 hint="Pass the run id the ADF monitor (or the step that started the run) shows.",
                                 code="PipelineRunNotFound") from None
            log.warning("child pipeline run %s not found; skipped", current)
            continue
        moment = now()
        activities = query_activity_runs(api, calls, ref, run, deadline=deadline, now=moment)
        activities.sort(key=lambda a: parse_time(a.get("activityRunStart")) or moment)
        parameters = run.get("parameters")
        asset = parameters.get("assetName") if isinstance(parameters, dict) else None
        read = pointer_read_by(activities)
        for activity in activities:
            name = job_name_from_activity(activity.get("activityType"), activity.get("input"))
            if name and all(j.name != name for j in found):
                found.append(SubmittedJob(name, current, run.get("pipelineName"), str(activity.get("activityName")),
                                          asset if isinstance(asset, str) else None,
                                          job_workspace_from_activity(activity.get("input")), read))
            output = activity.get("output")
            child = output.get("pipelineRunId") if isinstance(output, dict) else None
            if activity.get("activityType") == "ExecutePipeline" and isinstance(child, str) and child:
                pending.append((child, depth + 1))
    return found


def jobs_submitted_by_run(
    client: Any, resource_group: str, factory: str, run_id: str,
    *, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    calls: ArmCalls | None = None, deadline: float | None = None,
) -> list[SubmittedJob]:
    """``jobs_of_run`` over an azure-mgmt-datafactory client (``datafactory_client``)."""
    api = MgmtDataFactory(client)
    subscription = str(getattr(getattr(client, "_config", None), "subscription_id", "") or "")
    return jobs_of_run(api, calls or ArmCalls(), FactoryRef(subscription, resource_group, factory), run_id,
                       deadline=deadline, now=now)


def jobs_of_adf_run(factory: str | None, run_id: str, workspace: Any, credential: Any, *, direct: str,
                    calls: ArmCalls | None = None, deadline: float | None = None) -> list[SubmittedJob]:
    """The Azure ML jobs a Data Factory run and its child runs submitted, in start order (for a command).

    ``workspace`` (a ``WorkspaceRef``) gives the subscription, resource group and ARM endpoint of the factory;
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
        submitted = jobs_submitted_by_run(client, workspace.resource_group, factory, run_id,
                                          calls=calls, deadline=deadline)
    for job in submitted:
        log.info("run %s submitted job %s (activity %s of %s)", run_id, job.name, job.activity,
                 job.pipeline_name or job.pipeline_run_id)
    if not submitted:
        raise ContractViolation(f"pipeline run {run_id} submitted no Azure ML job (no WebActivity PUT to "
                                "…/workspaces/{ws}/jobs/{name} in it or its child runs)",
                                hint=f"Check the run id; `{direct}` takes a job directly.", code="NoJobsInRun")
    return submitted
