"""Azure ML's run-history service and the workspace discovery document, as azure-ai-ml 1.35.2 reaches them.

``ml_client.jobs.stream / download / list(parent_job_name=…)`` do not stay on ARM (``_job_operations.py``):

1. ``GET {WS}`` → ``properties.discoveryUrl``; the SDK GETs it **without a token** and reads the ``api`` key
   (``_get_workspace_url``, ``WorkspaceDiscoveryUrlKey.API``) as the base of its run-history client. Here both are on
   the ARM port: ``GET /discovery`` answers the region's endpoints, all this sandbox's ARM endpoint.
2. Run history (``_restclient/runhistory/operations/_runs_operations.py``), under
   ``/history/v1.0/subscriptions/…/workspaces/{ws}``: ``runs/{id}`` (``Run``), ``runs/{id}/details``
   (``RunDetails``: ``status``, ``error`` as an ``ErrorResponse`` ``{"error": {"code", "message"}}``, ``logFiles``
   ``{name: SAS URL}``), ``runs/{id}/children`` (a ``PaginatedRunList``: empty for a command job) and
   ``POST rundata`` (``GetRunDataResult``). The run-history client asks tokens for ``https://ml.azure.com/.default``
   (``runhistory/_configuration.py``); ARM tokens are accepted too.

``stream_logs_until_completion`` (``_job_ops_helper.py``) polls ``details`` while the status is in progress or
Finalizing, prints each ``logFiles`` entry matching ``user_logs/std_log*.txt``, and for a Failed run raises
``JobException`` with ``json.dumps(details.error.as_dict())``: the failed job's code and message, read from here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from cicd_tools.sandbox.armbase import authenticate, authorize, check_resource_group
from cicd_tools.sandbox.ml.job_store import JobRecord, jobs_state, log_blob
from cicd_tools.sandbox.ml.workspace import ARTIFACT_CONTAINER, PROVIDER, WS, _user_error, _workspace_id
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, Route, arm_error, json_response

ML_AUDIENCE = "https://ml.azure.com"
HISTORY = r"/history/v1\.0" + WS
RUN = HISTORY + r"(?:/experiments/(?P<experiment>[^/]+))?/runs/(?P<run>[^/]+)"
LOG_NAME = "user_logs/std_log.txt"
LOG_SAS_LIFETIME = dt.timedelta(hours=1)


def discovery(req: Request, hub: Hub) -> Response:
    """The region's service endpoints (served without a token, like ``{region}.api.azureml.ms/discovery``)."""
    base = hub.arm_endpoint.rstrip("/")
    keys = ("api", "catalog", "experimentation", "gallery", "history", "hyperdrive", "labeling", "modelmanagement",
            "pipelines")
    return json_response(200, {**{k: base for k in keys}, "studio": "https://ml.azure.com"})


def _access(req: Request, hub: Hub, action: str) -> None:
    claims = authenticate(req, hub, also_for=(ML_AUDIENCE,))
    check_resource_group(req, hub, req.params["sub"], req.params["rg"])
    ws = req.params["ws"]
    if ws.lower() != hub.layout.workspace.lower():
        raise HttpError(arm_error(404, "WorkspaceNotFound", f"Workspace {ws} not found."))
    authorize(hub, claims, _workspace_id(hub, hub.layout.workspace), f"{PROVIDER}/workspaces/{action}")


def _record(hub: Hub, name: str) -> JobRecord:
    state = jobs_state(hub)
    with state.lock:
        record = state.jobs.get(name)
    if record is None:
        raise _user_error(404, f"Run {name} was not found.", "RunNotFound")
    return record


def _log_url(hub: Hub, name: str) -> str:
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    account = hub.layout.workspace_storage_account
    container = ARTIFACT_CONTAINER
    blob = log_blob(name)
    now = dt.datetime.now(dt.UTC)
    sas = generate_blob_sas(account, container, blob, account_key=hub.account_key(account),
                            permission=BlobSasPermissions(read=True), start=now - dt.timedelta(minutes=5),
                            expiry=now + LOG_SAS_LIFETIME)
    return f"{hub.blob_endpoint_of(account)}/{container}/{blob}?{sas}"


def _error(hub: Hub, record: JobRecord) -> dict[str, Any] | None:
    if not record.error:
        return None
    return {"error": {"code": record.error["code"], "severity": None, "message": record.error["message"],
                      "messageFormat": None, "messageParameters": {}, "referenceCode": None, "detailsUri": None,
                      "target": None, "details": [], "innerError": None, "additionalInfo": None},
            "correlation": {"operation": None, "request": None}, "environment": hub.layout.location,
            "location": hub.layout.location, "time": record.end_time, "componentName": "CommonRuntime"}


def run_body(hub: Hub, record: JobRecord) -> dict[str, Any]:
    """The ``Run`` (and ``RunDetails``) fields the SDK reads, from the job's record (caller holds the lock)."""
    body = record.body
    compute = str(body.get("computeId") or "").rsplit("/", 1)[-1] or None
    run_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"run/{record.name}"))
    return {
        "runId": record.name, "runUuid": run_uuid, "rootRunId": record.name, "rootRunUuid": run_uuid,
        "parentRunId": None, "parentRunUuid": None, "runNumber": record.sequence,
        "experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"experiment/{body.get('experimentName')}")),
        "name": record.name, "displayName": body.get("displayName"), "description": body.get("description"),
        "status": record.status, "createdUtc": record.created_at, "createdTimeUtc": record.created_at,
        "startTimeUtc": record.start_time, "endTimeUtc": record.end_time, "error": _error(hub, record),
        "warnings": [], "tags": dict(body.get("tags") or {}), "properties": dict(body.get("properties") or {}),
        "parameters": {}, "services": {}, "target": compute, "runType": "azureml.CommonRuntime",
        "createdBy": {"userName": record.created_by}, "hidden": False, "revision": len(record.history),
        "statusRevision": len(record.history), "inputs": {}, "outputs": {},
    }


def get_run(req: Request, hub: Hub) -> Response:
    _access(req, hub, "experiments/runs/read")
    record = _record(hub, req.params["run"])
    with jobs_state(hub).lock:
        return json_response(200, run_body(hub, record))


def get_details(req: Request, hub: Hub) -> Response:
    _access(req, hub, "experiments/runs/read")
    record = _record(hub, req.params["run"])
    with jobs_state(hub).lock:
        body = run_body(hub, record)
        uploaded = record.log_uploaded
    body.update({"logFiles": {LOG_NAME: _log_url(hub, record.name)} if uploaded else {},
                 "inputDatasets": [], "outputDatasets": [], "runDefinition": None})
    return json_response(200, body)


def get_children(req: Request, hub: Hub) -> Response:
    """A command job has no child runs: an empty page (pipeline and sweep jobs are not emulated)."""
    _access(req, hub, "experiments/runs/read")
    _record(hub, req.params["run"])
    return json_response(200, {"value": [], "continuationToken": None, "nextLink": None})


def get_run_data(req: Request, hub: Hub) -> Response:
    """``POST rundata``: the run's metadata. Its ``outputs`` stay empty (the service does not always report them,
    and the SDK then looks for ``azureml/{job}/{output}/`` on the default datastore, where the sandbox puts them)."""
    _access(req, hub, "experiments/runs/read")
    body = req.json()
    run_id = body.get("runId") if isinstance(body, dict) else None
    if not isinstance(run_id, str) or not run_id:
        raise _user_error(400, "runId is required.", "ValidationError")
    record = _record(hub, run_id)
    with jobs_state(hub).lock:
        return json_response(200, {"runMetadata": run_body(hub, record), "runDefinition": None,
                                   "jobSpecification": None})


routes = [
    Route("GET", r"/discovery", discovery, public=True),  # the SDK reads it without a token, as from Azure
    # Run history takes ml.azure.com tokens as well as ARM's (the gate and ``_access`` check both).
    Route("GET", RUN, get_run, audiences=(ML_AUDIENCE,)),
    Route("GET", RUN + r"/details", get_details, audiences=(ML_AUDIENCE,)),
    Route("GET", RUN + r"/children", get_children, audiences=(ML_AUDIENCE,)),
    Route("POST", HISTORY + r"/rundata", get_run_data, audiences=(ML_AUDIENCE,)),
]
