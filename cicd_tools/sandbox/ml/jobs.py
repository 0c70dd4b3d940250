"""Microsoft.MachineLearningServices workspace jobs: command jobs validated like the service, then run locally.

``PUT {WS}/jobs/{id}`` (not long-running: 201 with status NotStarted; the same body again is 200, a
changed one 400), ``GET {WS}/jobs/{id}``, the list, and ``POST {WS}/jobs/{id}/cancel`` (202 + Location,
polled at ``mfeOperationResults``). What the PUT refuses, and with which message, is ``aml_job_checks``;
the run itself is ``aml_runner``. Loopback-only ``GET /_sandbox/aml/jobs/{id}`` shows a job's log, error and
the statuses it passed through.
A failed job's error is where Azure puts it: run history (``run_history.py``), not the ARM resource.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT
from cicd_tools.sandbox.ml.job_checks import invalid, validate_command_job
from cicd_tools.sandbox.ml.job_store import (
    TERMINAL,
    TIMING_PROFILES,
    JobRecord,
    jobs_state,
    output_base,
    resolve_asset_uri,
    set_status,
)
from cicd_tools.sandbox.ml.job_store import reset as reset  # the provider's reset hook (runtime.PROVIDERS)
from cicd_tools.sandbox.ml.runner import start_job
from cicd_tools.sandbox.ml.workspace import PROVIDER, WS, _now, _target, _user_error, _workspace_id
from cicd_tools.sandbox.server import Hub, Request, Response, Route, arm_error, json_response

JOB = WS + r"/jobs/(?P<job>[^/]+)"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")
_IMMUTABLE = ("jobType", "command", "codeId", "computeId", "environmentId", "inputs", "resources")


# -- resources ---------------------------------------------------------------------------------------------
def studio_url(hub: Hub, name: str) -> str:
    """The Studio link the service puts in ``services.Studio.endpoint``: the run, its workspace (``wsid``, with
    ``resourcegroups`` lowercased as azure-ai-ml's studio_url_from_job_id writes it) and the tenant (``tid``), as
    seen in service answers (``https://ml.azure.com/runs/<job>?wsid=/subscriptions/<sub>/resourcegroups/<rg>/
    workspaces/<ws>&tid=<tenant>``)."""
    layout = hub.layout
    return (f"https://ml.azure.com/runs/{name}?wsid=/subscriptions/{layout.subscription_id}/resourcegroups/"
            f"{layout.resource_group}/workspaces/{layout.workspace}&tid={SANDBOX_TENANT}")


def job_body(hub: Hub, record: JobRecord) -> dict[str, Any]:
    props = copy.deepcopy(record.body)
    props["status"] = record.status
    props["services"] = {
        "Tracking": {"jobServiceType": "Tracking", "port": None, "status": None, "errorMessage": None,
                     "endpoint": f"azureml://{hub.layout.location}.api.azureml.ms/mlflow/v1.0"
                                 f"{_workspace_id(hub, hub.layout.workspace)}?", "properties": None},
        "Studio": {"jobServiceType": "Studio", "port": None, "status": None, "errorMessage": None,
                   "endpoint": studio_url(hub, record.name), "properties": None},
    }
    extra = dict(props.get("properties") or {})
    extra["_azureml.ComputeTargetType"] = "kubernetes"
    if record.start_time:
        extra["StartTimeUtc"] = record.start_time
    if record.end_time:
        extra["EndTimeUtc"] = record.end_time
    # A failed job's error is not in the resource (its status is): run history holds it (``run_history.py``).
    props["properties"] = extra
    system = {"createdAt": record.created_at, "createdBy": record.created_by, "createdByType": "Application"}
    return {"id": f"{_workspace_id(hub, hub.layout.workspace)}/jobs/{record.name}", "name": record.name,
            "type": f"{PROVIDER}/workspaces/jobs", "properties": props, "systemData": system}


def _record(hub: Hub, name: str) -> JobRecord:
    state = jobs_state(hub)
    with state.lock:
        record = state.jobs.get(name)
    if record is None:
        raise _user_error(404, f"Job {name} not found in workspace {hub.layout.workspace}.", "NotFound")
    return record


def get_job(req: Request, hub: Hub) -> Response:
    _target(req, hub, "jobs/read")
    record = _record(hub, req.params["job"])
    state = jobs_state(hub)
    with state.lock:
        return json_response(200, job_body(hub, record))


def list_jobs(req: Request, hub: Hub) -> Response:
    _target(req, hub, "jobs/read")
    state = jobs_state(hub)
    with state.lock:
        records = sorted(state.jobs.values(), key=lambda r: r.sequence, reverse=True)
        skip = int(req.param("$skipToken") or 0)
        page = [job_body(hub, r) for r in records[skip:skip + 100]]
    body: dict[str, Any] = {"value": page}
    if skip + 100 < len(records):
        query = [(k, v) for k, v in req.query if k != "$skipToken"] + [("$skipToken", str(skip + 100))]
        body["nextLink"] = f"{hub.arm_endpoint}{req.path}?{urlencode(query)}"
    return json_response(200, body)


def put_job(req: Request, hub: Hub) -> Response:
    ws, claims = _target(req, hub, "jobs/write")
    name = req.params["job"]
    if not _NAME_RE.match(name):
        raise invalid(f"The job name '{name}' is invalid: it must match ^[a-zA-Z0-9][a-zA-Z0-9\\-_]{{0,254}}$.")
    body = req.json()
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise invalid("The request body must hold 'properties'.")
    state = jobs_state(hub)
    with state.lock:
        existing = state.jobs.get(name)
    if existing is not None:
        changed = [k for k in _IMMUTABLE if k in props and props.get(k) != existing.body.get(k)]
        if changed:
            raise _user_error(400, f"A job named {name} already exists; only tags, properties and description "
                              f"can be updated (changed: {', '.join(changed)}).", "Conflict")
        with state.lock:
            existing.body["tags"] = dict(props.get("tags") or existing.body.get("tags") or {})
            if "description" in props:
                existing.body["description"] = props["description"]
            return json_response(200, job_body(hub, existing))
    spec = validate_command_job(hub, ws, props, lambda uri: resolve_asset_uri(hub, uri))
    stored = copy.deepcopy(props)
    stored.pop("status", None)
    stored.setdefault("experimentName", "Default")
    stored.setdefault("displayName", name)
    resources = dict(stored.get("resources") or {})
    resources.setdefault("instanceCount", 1)
    resources.setdefault("instanceType", spec.default_instance_type)
    stored["resources"] = resources
    outputs = {k: dict(v) for k, v in (stored.get("outputs") or {}).items() if isinstance(v, dict)}
    for out_name, item in outputs.items():
        item.setdefault("mode", "ReadWriteMount")
        item.setdefault("uri", output_base(name, out_name))
    stored["outputs"] = outputs
    with state.lock:
        if name in state.jobs:  # a concurrent PUT won: answer what it stored
            return json_response(200, job_body(hub, state.jobs[name]))
        state.sequence += 1
        record = JobRecord(name=name, body=stored, created_at=_now(), sequence=state.sequence,
                           created_by=str(claims.get("name") or claims.get("oid") or "unknown"))
        record.history.append((record.status, record.created_at))
        state.jobs[name] = record
        generation = state.generation
        response = json_response(201, job_body(hub, record))
    start_job(hub, record, spec, generation)
    return response


def cancel_job(req: Request, hub: Hub) -> Response:
    _target(req, hub, "jobs/cancel/action")
    record = _record(hub, req.params["job"])
    state = jobs_state(hub)
    with state.lock:
        if record.status not in TERMINAL and not record.cancel.is_set():
            set_status(record, "CancelRequested", _now())  # the runner ends it Canceled after the cancel lag
            record.cancel.set()
    operation = f"jc:{record.name}:{uuid.uuid4().hex[:8]}"
    location = (f"{hub.arm_endpoint}{hub.layout.resource_group_id.split('/resourceGroups')[0]}/providers/"
                f"{PROVIDER}/locations/{hub.layout.location}/mfeOperationResults/{operation}"
                f"?api-version={req.param('api-version')}")
    return Response(202, b"", {"Location": location, "Retry-After": "1"})


def cancel_result(req: Request, hub: Hub) -> Response:
    """The cancel operation's Location: 202 while the job winds down, 200 once it is Canceled (or ended)."""
    authenticate_only(req, hub)
    match = re.match(r"^jc:(?P<job>.+):[0-9a-f]{8}$", req.params["operation"])
    if match is None:
        raise _user_error(404, f"Operation {req.params['operation']} not found.", "NotFound")
    record = _record(hub, match["job"])
    if record.status in TERMINAL:
        return Response(200)
    return Response(202, b"", {"Location": f"{hub.arm_endpoint}{req.target}", "Retry-After": "1"})


def authenticate_only(req: Request, hub: Hub) -> None:
    from cicd_tools.sandbox.armbase import authenticate

    authenticate(req, hub)


def control_job(req: Request, hub: Hub) -> Response:
    """``GET /_sandbox/aml/jobs/{id}``: status, error and the whole log (loopback only, like every control call)."""
    if req.client_ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        return arm_error(403, "Forbidden", "The sandbox control endpoint only answers loopback clients.")
    record = _record(hub, req.params["job"])
    state = jobs_state(hub)
    with state.lock:
        return json_response(200, {"name": record.name, "status": record.status, "error": record.error,
                                   "log": list(record.log), "startTimeUtc": record.start_time,
                                   "endTimeUtc": record.end_time,
                                   "history": [{"status": s, "time": t} for s, t in record.history]})


# -- control switch (served under /_sandbox/machinelearning/ by control.py) ---------------------------------
def get_timing(req: Request, hub: Hub) -> Response:
    return json_response(200, jobs_state(hub).timing.to_json())


def set_timing(req: Request, hub: Hub) -> Response:
    """``{"profile": "fast"|"realistic"}`` and/or seconds ``{"queued", "preparing", "minRunning", "finalizing",
    "cancel"}`` over it: how long jobs submitted from now on dwell in each state (reset: fast)."""
    body = req.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    profile = body.get("profile")
    if profile is not None and profile not in TIMING_PROFILES:
        raise ValueError(f"profile must be one of {', '.join(TIMING_PROFILES)}, got {profile!r}")
    state = jobs_state(hub)
    base = TIMING_PROFILES[profile] if profile else state.timing
    fields = {"queued": "queued", "preparing": "preparing", "minRunning": "min_running", "finalizing": "finalizing",
              "cancel": "cancel"}
    changes: dict[str, float] = {}
    for key, attr in fields.items():
        if key in body:
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
                raise ValueError(f"{key} must be a number of seconds between 0 and 3600, got {value!r}")
            changes[attr] = float(value)
    unknown = set(body) - set(fields) - {"profile"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; known: profile, {', '.join(fields)}")
    with state.lock:
        state.timing = dataclasses.replace(base, **changes)
        return json_response(200, state.timing.to_json())


routes = [
    Route("GET", WS + r"/jobs", list_jobs),
    Route("GET", JOB, get_job),
    Route("PUT", JOB, put_job),
    Route("POST", JOB + r"/cancel", cancel_job),
    Route("GET", r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices/locations/"
                 r"(?P<loc>[^/]+)/mfeOperationResults/(?P<operation>[^/]+)", cancel_result),
    Route("GET", r"/_sandbox/aml/jobs/(?P<job>[^/]+)", control_job, "control"),
]
