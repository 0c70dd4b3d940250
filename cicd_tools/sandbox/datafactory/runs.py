"""Pipeline runs of the sandbox's Data Factory: ``createRun`` executes the *published* pipeline locally.

The run goes through the toolkit's own runner (``cicd_tools.adf.runner``) in a background thread, with
the factory's network (``network.FactoryNetwork``) and managed identity. ``pipelineruns/{id}`` reports
Queued -> InProgress -> Succeeded | Failed | Canceling -> Cancelled; ``cancel?isRecursive=true`` cancels
the ExecutePipeline child runs too (in-flight Wait and Until stop at once); ``queryActivityruns`` needs the
``lastUpdatedAfter/Before`` window, filters, and pages with ``continuationToken``; ``queryPipelineRuns``
lists the factory's runs (this sandbox has no debug runs, which it would not list either).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cicd_tools.adf.loader import Factory, PipelineDoc, SourceFile
from cicd_tools.adf.run_model import SKIPPED, ActivityRun, PipelineRunResult
from cicd_tools.adf.run_rules import resolve_parameters, validate
from cicd_tools.adf.runner import PipelineInvalid, run_pipeline
from cicd_tools.adf.web import RequestsWebCaller
from cicd_tools.sandbox.datafactory.network import FactoryNetwork, FactoryTokens
from cicd_tools.sandbox.datafactory.resources import not_found, target
from cicd_tools.sandbox.datafactory.store import TERMINAL, FactoryState, RunRecord, df_state, factory_id, utc_now
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, arm_error, json_response

log = logging.getLogger(__name__)

PARAMETER_TYPES = ("string", "securestring", "int", "float", "bool", "array", "object")


def _published_factory(hub: Hub, factory: FactoryState) -> Factory:
    """The published pipelines and global parameters as the runner's ``Factory``."""
    with df_state(hub).lock:
        pipelines = {body["name"]: body for (kind, _), body in factory.resources.items() if kind == "pipelines"}
        globals_ = dict(factory.resources.get(("globalparameters", "default"), {}).get("properties", {}))
    docs = {}
    for name, body in pipelines.items():
        resource = {"name": name, "properties": body["properties"]}
        text = json.dumps(resource)
        docs[name] = PipelineDoc(name, resource, SourceFile(Path(f"{factory.name}/pipeline/{name}.json"), text,
                                                            resource))
    return Factory(root=Path(factory.name), global_parameters=globals_, pipelines=docs, complete=True)


def _bad_request(message: str) -> HttpError:
    return HttpError(arm_error(400, "BadRequest", message))


def check_parameters(pipeline: str, declared: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """createRun's parameter checks: unknown names and values of the wrong type are refused. Raises: HttpError."""
    unknown = [name for name in given if name not in declared]
    if unknown:
        raise _bad_request(f"The pipeline '{pipeline}' has no parameter named '{unknown[0]}'. Declared parameters: "
                           f"{', '.join(declared) or 'none'}.")
    out: dict[str, Any] = {}
    for name, value in given.items():
        spec = declared[name]
        kind = str(spec.get("type", "string")).lower() if isinstance(spec, Mapping) else "string"
        ok = {
            "int": (isinstance(value, int) and not isinstance(value, bool)) or _parses(value, int),
            "float": (isinstance(value, (int, float)) and not isinstance(value, bool)) or _parses(value, float),
            "bool": isinstance(value, bool) or str(value).lower() in ("true", "false"),
            "array": isinstance(value, list) or _parses_json(value, list),
            "object": isinstance(value, dict) or _parses_json(value, dict),
        }.get(kind, True)
        if not ok:
            raise _bad_request(f"The value '{value}' of parameter '{name}' is not of the declared type "
                               f"'{spec.get('type') if isinstance(spec, Mapping) else 'String'}'.")
        out[name] = value
    return out


def _parses(value: Any, kind: type) -> bool:
    try:
        kind(str(value).strip())
        return isinstance(value, str)
    except ValueError:
        return False


def _parses_json(value: Any, kind: type) -> bool:
    try:
        return isinstance(value, str) and isinstance(json.loads(value), kind)
    except ValueError:
        return False


class _Hooks:
    """Registers ExecutePipeline child runs in the store as they start and end."""

    def __init__(self, hub: Hub, factory: FactoryState) -> None:
        self.hub = hub
        self.factory = factory

    def child_started(self, run_id: str, pipeline_name: str, parameters: Mapping[str, Any],
                      invoked_by: Mapping[str, Any]) -> threading.Event:
        parent_id = str(invoked_by.get("pipelineRunId"))
        record = RunRecord(run_id, pipeline_name, dict(parameters),
                           {**invoked_by, "id": parent_id}, status="InProgress", run_start=utc_now(),
                           parent_run_id=parent_id)
        with df_state(self.hub).lock:
            self.factory.runs[run_id] = record
            parent = self.factory.runs.get(parent_id)
            if parent is not None:
                parent.children.append(run_id)
                if parent.cancel.is_set() and parent.status == "Canceling":
                    record.cancel.set()  # a child starting while its parent is being cancelled recursively
        return record.cancel

    def child_finished(self, result: PipelineRunResult) -> None:
        finish(self.hub, self.factory, result.run_id, result)

    def observe(self, run: ActivityRun) -> None:
        with df_state(self.hub).lock:
            record = self.factory.runs.get(run.pipeline_run_id)
            if record is not None:
                now = utc_now()
                record.activities[run.activity_run_id] = (run, now)
                record.last_updated = now


def finish(hub: Hub, factory: FactoryState, run_id: str, result: PipelineRunResult | None,
           message: str | None = None) -> None:
    with df_state(hub).lock:
        record = factory.runs.get(run_id)
        if record is None:
            return
        record.status = result.status if result else "Failed"
        record.message = result.message if result else (message or "")
        record.run_end = utc_now()
        record.last_updated = record.run_end


def _execute(hub: Hub, factory: FactoryState, record: RunRecord, published: Factory, doc: PipelineDoc) -> None:
    hooks = _Hooks(hub, factory)
    http = RequestsWebCaller(tokens=FactoryTokens(factory.principal, hub.signing_key, factory_id(hub, factory.name)),
                             origins=FactoryNetwork(hub, factory))
    http.session.trust_env = False  # the sandbox's activities never go through a proxy from the environment
    with df_state(hub).lock:
        if record.status == "Queued":
            record.status = "InProgress"
        record.run_start = record.last_updated = utc_now()
    try:
        result = run_pipeline(doc, parameters=record.parameters, factory=published, http=http,
                              run_id=record.run_id, observer=hooks.observe, cancel=record.cancel, hooks=hooks)
    except PipelineInvalid as err:
        finish(hub, factory, record.run_id, None, f"The pipeline cannot run: {err.message}")
    except Exception as err:  # a bug in the runner: the run fails, the sandbox keeps serving
        log.exception("sandbox run %s failed", record.run_id)
        finish(hub, factory, record.run_id, None, f"The sandbox failed to run the pipeline: {err}")
    else:
        finish(hub, factory, record.run_id, result)
    finally:
        http.close()


def create_run(req: Request, hub: Hub) -> Response:
    factory = target(req, hub, "pipelines/createrun/action")
    name = req.params["name"]
    published = _published_factory(hub, factory)
    doc = next((d for n, d in published.pipelines.items() if n.lower() == name.lower()), None)
    if doc is None:
        raise not_found("pipelines", name, factory.name)
    body = req.json()
    if body is not None and not isinstance(body, dict):
        raise _bad_request("The createRun body must be an object of parameter name -> value.")
    reference = req.param("referencePipelineRunId")
    if reference:
        with df_state(hub).lock:
            previous = factory.runs.get(reference)
        if previous is None:
            raise HttpError(arm_error(404, "NotFound", f"Pipeline run '{reference}' not found."))
        body = dict(previous.parameters)
    declared = doc.properties.get("parameters")
    given = check_parameters(doc.name, declared if isinstance(declared, Mapping) else {}, body or {})
    try:
        validate(doc.resource)
        values = resolve_parameters(doc.resource, given)
    except PipelineInvalid as err:
        raise _bad_request(f"Pipeline '{doc.name}': {err.message}") from None
    record = RunRecord(str(uuid.uuid4()), doc.name, values, {"id": uuid.uuid4().hex, "name": "Manual",
                                                             "invokedByType": "Manual"})
    with df_state(hub).lock:
        factory.runs[record.run_id] = record
    threading.Thread(target=_execute, args=(hub, factory, record, published, doc), daemon=True,
                     name=f"adf-run-{record.run_id[:8]}").start()
    return json_response(200, {"runId": record.run_id})


def _run(hub: Hub, factory: FactoryState, run_id: str) -> RunRecord:
    with df_state(hub).lock:
        record = factory.runs.get(run_id) or next(
            (r for k, r in factory.runs.items() if k.lower() == run_id.lower()), None)
    if record is None:
        raise HttpError(arm_error(404, "PipelineRunNotFound", f"Pipeline run '{run_id}' not found in factory "
                                  f"'{factory.name}'."))
    return record


def get_run(req: Request, hub: Hub) -> Response:
    factory = target(req, hub, "pipelineruns/read")
    record = _run(hub, factory, req.params["run"])
    with df_state(hub).lock:
        return json_response(200, record.to_json())


def cancel_run(req: Request, hub: Hub) -> Response:
    """Cancel a run; ``isRecursive=true`` cancels its child runs (and theirs) too. A finished run is left as is."""
    factory = target(req, hub, "pipelineruns/cancel/action")
    record = _run(hub, factory, req.params["run"])
    recursive = (req.param("isRecursive") or "").lower() == "true"
    with df_state(hub).lock:
        todo = [record]
        while todo:
            current = todo.pop()
            if current.status not in TERMINAL:
                current.status = "Canceling"
                current.last_updated = utc_now()
                current.cancel.set()
            if recursive:
                todo.extend(factory.runs[c] for c in current.children if c in factory.runs)
    return Response(200)


# -- queries ----------------------------------------------------------------------------------------
def _time(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, str) or not value:
        raise _bad_request(f"'{field}' is required (an ISO 8601 time).")
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        # ADF writes 7 fractional digits; Python reads at most 6.
        head, _, frac = value.strip().rstrip("Zz").partition(".")
        try:
            moment = dt.datetime.fromisoformat(f"{head}.{frac[:6]}" if frac else head)
        except ValueError:
            raise _bad_request(f"'{field}' is not an ISO 8601 time: '{value}'.") from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _window(body: Any) -> tuple[dt.datetime, dt.datetime, dict[str, Any]]:
    if not isinstance(body, dict):
        raise _bad_request("The query body needs 'lastUpdatedAfter' and 'lastUpdatedBefore'.")
    return _time(body.get("lastUpdatedAfter"), "lastUpdatedAfter"), _time(
        body.get("lastUpdatedBefore"), "lastUpdatedBefore"), body


def _matches(item: Mapping[str, Any], filters: Any, operands: Mapping[str, str]) -> bool:
    for flt in filters if isinstance(filters, list) else []:
        if not isinstance(flt, Mapping):
            raise _bad_request("Each filter needs 'operand', 'operator' and 'values'.")
        operand, operator, values = flt.get("operand"), flt.get("operator"), flt.get("values")
        if operand not in operands or operator not in ("Equals", "NotEquals", "In", "NotIn") or not isinstance(
                values, list):
            raise _bad_request(f"Unsupported filter: {json.dumps(flt)} (operands: {', '.join(operands)}; "
                               "operators: Equals, NotEquals, In, NotIn).")
        actual = str(item.get(operands[str(operand)], ""))
        hit = actual.lower() in [str(v).lower() for v in values]
        if hit != (operator in ("Equals", "In")):
            return False
    return True


def _page(items: list[dict[str, Any]], body: Mapping[str, Any], size: int) -> dict[str, Any]:
    token = body.get("continuationToken")
    start = 0
    if token:
        try:
            start = int(base64.b64decode(str(token)).decode())
        except ValueError:
            raise _bad_request("The continuationToken is not one this service issued.") from None
    page = items[start:start + size]
    out: dict[str, Any] = {"value": page}
    if start + size < len(items):
        out["continuationToken"] = base64.b64encode(str(start + size).encode()).decode()
    return out


def _order(items: list[dict[str, Any]], body: Mapping[str, Any], default: str) -> list[dict[str, Any]]:
    order = body.get("orderBy")
    spec = order[0] if isinstance(order, list) and order and isinstance(order[0], Mapping) else {}
    key = str(spec.get("orderBy") or default)
    return sorted(items, key=lambda i: str(i.get(key[0].lower() + key[1:]) or ""),
                  reverse=str(spec.get("order", "ASC")).upper() == "DESC")


ACTIVITY_OPERANDS = {"ActivityName": "activityName", "ActivityType": "activityType", "Status": "status"}
RUN_OPERANDS = {"PipelineName": "pipelineName", "Status": "status", "RunGroupId": "runGroupId"}


def query_activity_runs(req: Request, hub: Hub) -> Response:
    factory = target(req, hub, "pipelineruns/queryactivityruns/action")
    record = _run(hub, factory, req.params["run"])
    after, before, body = _window(req.json())
    with df_state(hub).lock:
        runs = [(run, updated) for run, updated in record.activities.values() if run.status != SKIPPED]
        size = factory.page_size
    items = [run.to_dict() for run, updated in runs if after <= updated <= before]
    for item in items:
        if item["status"] == "InProgress":
            item["activityRunEnd"], item["durationInMs"] = None, None
    items = [i for i in items if _matches(i, body.get("filters"), ACTIVITY_OPERANDS)]
    return json_response(200, _page(_order(items, body, "ActivityRunStart"), body, size))


def query_pipeline_runs(req: Request, hub: Hub) -> Response:
    factory = target(req, hub, "pipelineruns/read")
    after, before, body = _window(req.json())
    with df_state(hub).lock:
        items = [r.to_json() for r in factory.runs.values() if after <= r.last_updated <= before]
        size = factory.page_size
    items = [i for i in items if _matches(i, body.get("filters"), RUN_OPERANDS)]
    return json_response(200, _page(_order(items, body, "RunStart"), body, size))
