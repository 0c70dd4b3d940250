"""Microsoft.MachineLearningServices workspace jobs: command jobs validated like the service, then run locally.

``PUT {WS}/jobs/{id}`` (not long-running: 201 with status NotStarted), ``GET {WS}/jobs/{id}``, the list,
and ``POST {WS}/jobs/{id}/cancel`` (202 + Location). The PUT refuses what the service refuses, with
its messages (AZURE_FACTS.md §1, §6): a ``codeId`` that is not the full ARM id of an existing code
version, an unknown ``computeId`` or ``instanceType``, typed literal inputs (``The value 'string' of
input type is not valid for Command job``), empty literal values (``The Value field is required``),
a ``mode`` the input type does not allow, an asset ``uri`` that resolves to nothing, an
``environmentId`` that names no environment. The run itself lives in ``aml_runner``.

Environments the sandbox knows (it validates ``environmentId`` but builds no image, every job runs
with the sandbox's Python): the workspace environments in ``WORKSPACE_ENVIRONMENTS`` by full ARM id,
and the curated ``azureml`` registry environments in ``CURATED_ENVIRONMENTS`` as
``azureml://registries/azureml/environments/{name}/versions/{v}`` or ``…/labels/latest``.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cicd_tools.aml.jobspec import INPUT_MODES, OUTPUT_MODES, OUTPUT_TYPES, TYPED_LITERALS
from cicd_tools.sandbox import aml_compute
from cicd_tools.sandbox.aml import PROVIDER, WS, _stored, _target, _user_error, _workspace_id
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, Route, json_response

JOB = WS + r"/jobs/(?P<job>[^/]+)"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")
CODE_ID_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)
ENV_ARM_RE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)
ENV_REGISTRY_RE = re.compile(
    r"^azureml://registries/(?P<registry>[^/]+)/environments/(?P<name>[^/]+)/(?:versions/(?P<version>[^/]+)"
    r"|labels/(?P<label>[^/]+))$")
WORKSPACE_ENVIRONMENTS: dict[str, tuple[str, ...]] = {"pytorch-gpu": ("1",), "sklearn-cpu": ("1", "2")}
CURATED_ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "sklearn-1.5": ("1", "25"), "acpt-pytorch-2.2-cuda12.1": ("1", "30"), "minimal-ubuntu22.04-py311-cpu": ("1",),
}
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")
_REFERENCE_RE = re.compile(r"\$\{\{\s*(?P<kind>inputs|outputs)\.(?P<name>[A-Za-z0-9_]+)\s*\}\}")
_IMMUTABLE = ("jobType", "command", "codeId", "computeId", "environmentId", "inputs", "resources")


@dataclass
class JobRecord:
    """One job: the stored resource body, its status and what the run produced."""

    name: str
    body: dict[str, Any]  # the resource's ``properties`` as the service stores them
    status: str = "NotStarted"
    created_at: str = ""
    created_by: str = ""
    sequence: int = 0
    error: dict[str, str] | None = None
    log: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    start_time: str | None = None
    end_time: str | None = None


@dataclass
class JobsState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    sequence: int = 0
    generation: int = 0  # bumped by reset: runners of an older generation stop writing


_STATES: weakref.WeakKeyDictionary[Any, JobsState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def jobs_state(hub: Hub) -> JobsState:
    with _STATES_LOCK:
        state = _STATES.get(hub.state)
        if state is None:
            state = _STATES[hub.state] = JobsState()
        return state


def reset(hub: Hub) -> None:
    """Cancel running jobs and forget every job (the sandbox reset hook)."""
    with _STATES_LOCK:
        old = _STATES.get(hub.state)
        _STATES[hub.state] = JobsState(generation=(old.generation + 1) if old else 0)
    if old is not None:
        for record in old.jobs.values():
            record.cancel.set()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _invalid(message: str) -> HttpError:
    return _user_error(400, message, "ValidationError")


# -- validation --------------------------------------------------------------------------------------------
def _check_code(hub: Hub, ws: str, code_id: Any) -> None:
    if not isinstance(code_id, str) or not code_id:
        raise _invalid("CodeId is required for a Command job: the full ARM id of a code version "
                       "(/subscriptions/…/workspaces/{ws}/codes/{name}/versions/{version}).")
    match = CODE_ID_RE.match(code_id)
    if not match:
        raise _invalid(f"Invalid codeId '{code_id}': a Command job's codeId must be the full ARM id of a code "
                       "version (/subscriptions/…/workspaces/{ws}/codes/{name}/versions/{version}); "
                       "'azureml:name:version' and local paths are resolved by the client, not the service.")
    if match["ws"].lower() != ws.lower() or match["sub"].lower() != hub.layout.subscription_id.lower() \
            or match["rg"].lower() != hub.layout.resource_group.lower():
        raise _invalid(f"Invalid codeId '{code_id}': it names another workspace than {ws}.")
    try:
        _stored(hub, ws, match["name"], match["version"])
    except HttpError:
        raise _user_error(404, f"Could not find asset with ID: {code_id}", "NotFound") from None


def environment_known(hub: Hub, env_id: str) -> bool:
    """Whether ``env_id`` names an environment the sandbox's workspace or the curated registry holds."""
    match = ENV_ARM_RE.match(env_id)
    if match:
        return match["ws"].lower() == hub.layout.workspace.lower() and \
            match["version"] in WORKSPACE_ENVIRONMENTS.get(match["name"], ())
    match = ENV_REGISTRY_RE.match(env_id)
    if match and match["registry"] == "azureml" and match["name"] in CURATED_ENVIRONMENTS:
        return match["label"] == "latest" if match["label"] else match["version"] in CURATED_ENVIRONMENTS[match["name"]]
    return False


def _check_environment(hub: Hub, env_id: Any) -> None:
    if not isinstance(env_id, str) or not env_id:
        raise _invalid("EnvironmentId is required for a Command job.")
    if not environment_known(hub, env_id):
        raise _user_error(404, f"Could not find asset with ID: {env_id} (an environment is referenced by its full "
                          "ARM id, or azureml://registries/{registry}/environments/{name}/versions/{version}).",
                          "NotFound")


def _check_compute(hub: Hub, props: dict[str, Any]) -> aml_compute.ComputeSpec:
    compute = props.get("computeId")
    match = aml_compute.COMPUTE_ID_RE.match(compute) if isinstance(compute, str) else None
    if match is None:
        raise _invalid(f"Invalid computeId '{compute}': the full ARM id of a workspace compute is required.")
    spec = aml_compute.compute_spec(hub, match["compute"])
    if spec is None or match["ws"].lower() != hub.layout.workspace.lower():
        raise _user_error(404, f"Compute {match['compute']} not found in workspace {match['ws']}.", "NotFound")
    resources = props.get("resources") or {}
    if not isinstance(resources, dict):
        raise _invalid("resources must be an object.")
    wanted = resources.get("instanceType")
    if wanted is not None and spec.instance_type(str(wanted)) is None:
        raise _invalid(f"Instance type '{wanted}' is not found in compute '{spec.name}'. Available instance types: "
                       f"{', '.join(t.name for t in spec.instance_types)}.")
    count = resources.get("instanceCount", 1)
    if not isinstance(count, int) or count < 1:
        raise _invalid(f"resources.instanceCount must be a positive integer, got {count!r}.")
    return spec


def resolve_asset_uri(hub: Hub, uri: str) -> str | None:
    """The datastore path an input ``uri`` names, or None when the sandbox cannot resolve it.

    ``azureml://datastores/workspaceblobstore/paths/{p}`` and ``azureml://jobs/{job}/outputs/{out}[/paths/{p}]``
    (the latter: the output of an earlier job of this workspace, known once that job was submitted).
    """
    match = re.match(r"^azureml://datastores/workspaceblobstore/paths/(?P<path>.+)$", uri)
    if match:
        return match["path"]
    match = re.match(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<out>[^/]+)(?:/paths/(?P<path>.*))?$", uri)
    if match:
        state = jobs_state(hub)
        with state.lock:
            record = state.jobs.get(match["job"])
            output = (record.body.get("outputs") or {}).get(match["out"]) if record else None
        if not isinstance(output, dict) or not isinstance(output.get("uri"), str):
            return None
        base = resolve_asset_uri(hub, output["uri"])
        if base is None:
            return None
        return base.rstrip("/") + "/" + (match["path"] or "")
    return None


def _check_inputs(hub: Hub, props: dict[str, Any]) -> None:
    inputs = props.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise _invalid("inputs must be an object.")
    for name, item in inputs.items():
        if not isinstance(item, dict):
            raise _invalid(f"Input '{name}' must be an object with jobInputType.")
        kind = item.get("jobInputType")
        if kind == "literal":
            value = item.get("value")
            if value is None:
                raise _invalid(f"Input '{name}': The Value field is required.")
            if value == "":
                raise _invalid(f"Input '{name}': Empty string is not allowed for input value. "
                               "The Value field is required.")
            continue
        if kind in TYPED_LITERALS or kind not in INPUT_MODES:
            raise _invalid(f"The value '{kind}' of input type is not valid for Command job")
        mode = item.get("mode")
        if mode is not None and mode not in INPUT_MODES[kind]:
            raise _invalid(f"Input '{name}': mode '{mode}' is not supported for input type '{kind}'. Supported "
                           f"modes: {', '.join(INPUT_MODES[kind])}.")
        uri = item.get("uri")
        if not isinstance(uri, str) or not uri:
            raise _invalid(f"Input '{name}': The Uri field is required.")
        if resolve_asset_uri(hub, uri) is None:
            raise _invalid(f"Input '{name}': the uri '{uri}' could not be resolved (the sandbox resolves "
                           "azureml://datastores/workspaceblobstore/paths/… and azureml://jobs/{job}/outputs/{name}).")


def _check_outputs(props: dict[str, Any]) -> None:
    outputs = props.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise _invalid("outputs must be an object.")
    for name, item in outputs.items():
        if item is None:
            continue
        if not isinstance(item, dict) or item.get("jobOutputType") not in OUTPUT_TYPES:
            kind = item.get("jobOutputType") if isinstance(item, dict) else item
            raise _invalid(f"The value '{kind}' of output type is not valid for Command job")
        mode = item.get("mode")
        if mode is not None and mode not in OUTPUT_MODES:
            raise _invalid(f"Output '{name}': mode '{mode}' is not supported for outputs. Supported modes: "
                           f"{', '.join(OUTPUT_MODES)}.")
        uri = item.get("uri")
        if uri is not None and not re.match(r"^azureml://datastores/workspaceblobstore/paths/.+", str(uri)):
            raise _invalid(f"Output '{name}': the sandbox writes outputs to "
                           "azureml://datastores/workspaceblobstore/paths/…, not '{uri}'.")


def _check_command(props: dict[str, Any]) -> None:
    command = props.get("command")
    if not isinstance(command, str) or not command.strip():
        raise _invalid("Command is required for a Command job.")
    for ref in _REFERENCE_RE.finditer(command):
        declared = props.get(ref["kind"]) or {}
        if ref["name"] not in declared:
            raise _invalid(f"The command references ${{{{{ref['kind']}.{ref['name']}}}}}, which is not declared in "
                           f"the job's {ref['kind']}.")


def validate_command_job(hub: Hub, ws: str, props: dict[str, Any]) -> aml_compute.ComputeSpec:
    """Check a Command job's properties like the service. Raises: HttpError (400/404 UserError)."""
    if props.get("jobType") != "Command":
        raise _user_error(400, f"The sandbox runs Command jobs only; jobType '{props.get('jobType')}' is not "
                          "implemented.", "NotImplemented")
    _check_command(props)
    _check_code(hub, ws, props.get("codeId"))
    _check_environment(hub, props.get("environmentId"))
    spec = _check_compute(hub, props)
    _check_inputs(hub, props)
    _check_outputs(props)
    return spec


# -- resources ---------------------------------------------------------------------------------------------
def output_base(name: str, output: str) -> str:
    """Where the service puts an output without a ``uri``: ``azureml/{job}/{output}/`` on the default datastore."""
    return f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/{output}/"


def job_body(hub: Hub, record: JobRecord) -> dict[str, Any]:
    props = copy.deepcopy(record.body)
    props["status"] = record.status
    props["services"] = {
        "Tracking": {"jobServiceType": "Tracking", "port": None, "status": None, "errorMessage": None,
                     "endpoint": f"azureml://{hub.layout.location}.api.azureml.ms/mlflow/v1.0"
                                 f"{_workspace_id(hub, hub.layout.workspace)}?", "properties": None},
        "Studio": {"jobServiceType": "Studio", "port": None, "status": None, "errorMessage": None,
                   "endpoint": f"https://ml.azure.com/runs/{record.name}", "properties": None},
    }
    extra = dict(props.get("properties") or {})
    extra["_azureml.ComputeTargetType"] = "kubernetes"
    if record.start_time:
        extra["StartTimeUtc"] = record.start_time
    if record.end_time:
        extra["EndTimeUtc"] = record.end_time
    if record.error:
        # Not in the REST resource (the portal reads it from run history): the sandbox's place for it.
        extra["sandbox.errorCode"] = record.error["code"]
        extra["sandbox.errorMessage"] = record.error["message"]
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
        raise _invalid(f"The job name '{name}' is invalid: it must match ^[a-zA-Z0-9][a-zA-Z0-9\\-_]{{0,254}}$.")
    body = req.json()
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise _invalid("The request body must hold 'properties'.")
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
    spec = validate_command_job(hub, ws, props)
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
        state.jobs[name] = record
        generation = state.generation
        response = json_response(201, job_body(hub, record))
    from cicd_tools.sandbox.aml_runner import start_job

    start_job(hub, record, spec, generation)
    return response


def cancel_job(req: Request, hub: Hub) -> Response:
    _target(req, hub, "jobs/cancel/action")
    record = _record(hub, req.params["job"])
    state = jobs_state(hub)
    with state.lock:
        if record.status not in TERMINAL:
            record.status = "CancelRequested"
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


routes = [
    Route("GET", WS + r"/jobs", list_jobs),
    Route("GET", JOB, get_job),
    Route("PUT", JOB, put_job),
    Route("POST", JOB + r"/cancel", cancel_job),
    Route("GET", r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices/locations/"
                 r"(?P<loc>[^/]+)/mfeOperationResults/(?P<operation>[^/]+)", cancel_result),
]
