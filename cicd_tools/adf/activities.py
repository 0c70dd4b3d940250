"""Activity implementations of the local runner: SetVariable, AppendVariable, Wait, Fail, Filter, WebActivity.

An implementation takes an ``Invocation`` and returns the activity's output, or raises ``ActivityFailed``.
Containers (IfCondition, Switch, ForEach, Until) and ExecutePipeline are in ``activities_control``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cicd_tools.adf.expressions import EvalContext, ExpressionError, evaluate_json
from cicd_tools.adf.expressions.types import EvaluationLimitError
from cicd_tools.adf.loader import Factory
from cicd_tools.adf.run_model import (
    LOCAL_EVALUATION_LIMIT,
    ActivityFailed,
    ActivityRun,
    Clock,
    PipelineRunResult,
    ScopeOutcome,
)
from cicd_tools.adf.timespan import timespan_seconds
from cicd_tools.adf.web import DEFAULT_RUNTIME, WebCaller, WebCallError, WebRequest, WebResponse, parse_headers

log = logging.getLogger(__name__)

MSI_TYPES = {"msi", "systemassignedmanagedidentity", "userassignedmanagedidentity"}
WEB_ERROR = "2108"  # ADF's error code for a failed Web activity call
DEFAULT_HTTP_TIMEOUT = 60.0  # httpRequestTimeout default: 00:01:00
MAX_HTTP_TIMEOUT = 600.0  # ADF caps httpRequestTimeout at 10 minutes
ASYNC_POLL_SECONDS = 10.0  # between GETs of a 202 Location when no Retry-After is given


class Execution(Protocol):
    """What activities may use of the run they belong to (implemented by the runner)."""

    clock: Clock
    http: WebCaller
    factory: Factory | None
    pipeline_name: str
    return_value: Any
    variables_lock: threading.Lock  # parallel ForEach iterations write the same (pipeline-wide) variables

    def run_scope(
        self, activities: Sequence[Any], ctx: EvalContext, records: list[ActivityRun], iteration: int | None = None
    ) -> ScopeOutcome: ...

    def run_child(self, name: str, parameters: Mapping[str, Any]) -> PipelineRunResult: ...

    def sleep(self, seconds: float) -> None:
        """Sleep through the run's clock; ends early and raises RunCancelled when the run is cancelled."""
        ...

    def check_cancelled(self) -> None: ...


@dataclass
class Invocation:
    """One activity being run: its JSON, the expression context, the run, and where inner runs go."""

    obj: Mapping[str, Any]
    ctx: EvalContext
    execution: Execution
    inner: list[ActivityRun] = field(default_factory=list)
    input: Any = None
    iteration: int | None = None
    partial_output: Any = None  # what a cancelled activity reports (ExecutePipeline: its child run id)

    @property
    def name(self) -> str:
        return str(self.obj.get("name", ""))

    @property
    def type_properties(self) -> Mapping[str, Any]:
        tp = self.obj.get("typeProperties")
        return tp if isinstance(tp, Mapping) else {}

    def evaluate(self, value: Any, ctx: EvalContext | None = None) -> Any:
        """Evaluate expressions in a JSON value. Raises: ActivityFailed (InvalidTemplate) when one fails."""
        try:
            return evaluate_json(value, ctx or self.ctx)
        except ExpressionError as err:
            code = LOCAL_EVALUATION_LIMIT if isinstance(err, EvaluationLimitError) else "InvalidTemplate"
            raise ActivityFailed(code, f"The expression cannot be evaluated: {err.message}") from None

    def child_context(self, item: Any = None, *, push_item: bool = False) -> EvalContext:
        """A context for a ForEach iteration: own activity outputs, same (pipeline-wide) variables."""
        items = [*self.ctx.items, item] if push_item else list(self.ctx.items)
        return replace(self.ctx, items=items, activity_outputs=dict(self.ctx.activity_outputs))


Implementation = Callable[[Invocation], Any]


def set_variable(inv: Invocation) -> Any:
    """SetVariable: a declared variable, or the pipeline return value (``setSystemVariable``)."""
    tp = inv.type_properties
    name = tp.get("variableName")
    if tp.get("setSystemVariable") is True and name == "pipelineReturnValue":
        value = _return_value(inv, tp.get("value"))
        inv.execution.return_value = value
        inv.input = {"variableName": name, "value": value}
        return {"name": name, "value": value}
    if not isinstance(name, str) or name not in inv.ctx.variables:
        raise ActivityFailed("InvalidVariable", f"The variable '{name}' is not declared in the pipeline")
    value = inv.evaluate(tp.get("value"))
    inv.input = {"variableName": name, "value": value}
    with inv.execution.variables_lock:
        inv.ctx.variables[name] = value
    return {"name": name, "value": value}


def _return_value(inv: Invocation, entries: Any) -> dict[str, Any]:
    """``[{"key", "value": {"type", "content"}}]`` -> ``{key: value}``; Expression contents are evaluated."""

    def typed(spec: Any) -> Any:
        if not isinstance(spec, Mapping) or "type" not in spec:
            return inv.evaluate(spec)
        content = spec.get("content")
        kind = str(spec["type"]).lower()
        if kind == "expression":
            return inv.evaluate(content)
        if kind == "array" and isinstance(content, list):
            return [typed(item) for item in content]
        if kind == "null":
            return None
        return content

    out: dict[str, Any] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and "key" in entry:
            out[str(entry["key"])] = typed(entry.get("value"))
    return out


def append_variable(inv: Invocation) -> Any:
    """AppendVariable: add the value to an Array variable."""
    tp = inv.type_properties
    name = tp.get("variableName")
    if not isinstance(name, str) or name not in inv.ctx.variables:
        raise ActivityFailed("InvalidVariable", f"The variable '{name}' is not declared in the pipeline")
    value = inv.evaluate(tp.get("value"))
    inv.input = {"variableName": name, "value": value}
    with inv.execution.variables_lock:  # read-modify-write: parallel iterations must not lose appends
        current = inv.ctx.variables.get(name)
        if current is None:
            current = []
        if not isinstance(current, list):
            raise ActivityFailed("InvalidVariable", f"AppendVariable needs an Array variable; '{name}' is not one")
        inv.ctx.variables[name] = [*current, value]  # a new list: readers holding the old one see no change
    return {}


def wait(inv: Invocation) -> Any:
    """Wait: ``waitTimeInSeconds`` through the injected sleep."""
    seconds = inv.evaluate(inv.type_properties.get("waitTimeInSeconds", 0))
    try:
        amount = float(seconds)
    except (TypeError, ValueError):
        raise ActivityFailed("InvalidTemplate", f"waitTimeInSeconds {seconds!r} is not a number") from None
    inv.input = {"waitTimeInSeconds": seconds}
    inv.execution.sleep(amount)
    return {}


def fail(inv: Invocation) -> Any:
    """Fail: end Failed with the evaluated message and errorCode."""
    tp = inv.type_properties
    message = inv.evaluate(tp.get("message", ""))
    code = inv.evaluate(tp.get("errorCode", ""))
    inv.input = {"message": message, "errorCode": code}
    raise ActivityFailed(str(code), str(message))


def filter_items(inv: Invocation) -> Any:
    """Filter: keep the items whose condition is true; output like ADF's."""
    tp = inv.type_properties
    items = inv.evaluate(tp.get("items"))
    if not isinstance(items, list):
        raise ActivityFailed("InvalidTemplate", "Filter items must evaluate to an array")
    kept = []
    for item in items:
        verdict = inv.evaluate(tp.get("condition"), inv.child_context(item, push_item=True))
        if verdict is True:
            kept.append(item)
        elif verdict is not False:
            raise ActivityFailed("InvalidTemplate", f"Filter condition must be a boolean, got {verdict!r}")
    inv.input = {"items": items}
    return {"ItemsCount": len(items), "FilteredItemsCount": len(kept), "Value": kept}


def web_request(inv: Invocation) -> WebRequest:
    """The evaluated WebActivity request. Raises: ActivityFailed for unsupported authentication."""
    tp = inv.type_properties
    method = str(inv.evaluate(tp.get("method") or "GET")).upper()
    url = inv.evaluate(tp.get("url"))
    if not isinstance(url, str) or not url:
        raise ActivityFailed(WEB_ERROR, "The Web activity has no url")
    headers = parse_headers(inv.evaluate(tp.get("headers")))
    body: Any = inv.evaluate(tp.get("body")) if method != "GET" else None
    if isinstance(body, (Mapping, list)):
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    elif body is not None and not isinstance(body, str):
        body = json.dumps(body)
    auth = inv.evaluate(tp.get("authentication")) if isinstance(tp.get("authentication"), Mapping) else None
    send_headers = dict(headers)  # the recorded input must not carry credentials
    msi_resource = _authenticate(auth, send_headers)
    connect_via = tp.get("connectVia")  # only inside typeProperties: a root-level one is ignored, like ADF does
    runtime = inv.evaluate(connect_via.get("referenceName")) if isinstance(connect_via, Mapping) else None
    policy = inv.obj.get("policy") if isinstance(inv.obj.get("policy"), Mapping) else {}
    timeout = min(timespan_seconds(tp.get("httpRequestTimeout"), DEFAULT_HTTP_TIMEOUT), MAX_HTTP_TIMEOUT)
    timeout = min(timeout, timespan_seconds(policy.get("timeout") if policy else None, timeout))
    inv.input = {
        k: v
        for k, v in {
            "method": method,
            "url": url,
            "headers": headers,
            "body": body,
            "authentication": {k: v for k, v in auth.items() if k.lower() != "password"} if auth else None,
            "connectVia": {"referenceName": runtime, "type": "IntegrationRuntimeReference"} if runtime else None,
        }.items()
        if v is not None
    }
    return WebRequest(
        method=method,
        url=url,
        headers=send_headers,
        body=body,
        msi_resource=msi_resource,
        runtime=str(runtime) if runtime else None,
        timeout=timeout,
        verify=tp.get("disableCertValidation") is not True,
    )


def _authenticate(auth: Mapping[str, Any] | None, headers: dict[str, str]) -> str | None:
    """Apply ``authentication``: the MSI resource to ask a token for, or a Basic header."""
    if not auth:
        return None
    kind = str(auth.get("type", "")).lower()
    if kind in MSI_TYPES:
        resource = auth.get("resource")
        if not isinstance(resource, str) or not resource.strip():
            raise ActivityFailed(WEB_ERROR, "Managed identity authentication needs a 'resource'")
        return resource
    if kind == "basic":
        password = auth.get("password")
        if isinstance(password, Mapping):
            password = password.get("value")
        pair = f"{auth.get('username', '')}:{password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return None
    raise ActivityFailed(
        "UnsupportedAuthentication", f"authentication type '{auth.get('type')}' is not supported by the local runner"
    )


def web_activity(inv: Invocation) -> Any:
    """WebActivity: real HTTP through the run's WebCaller; 202 + Location is polled unless turnOffAsync."""
    request = web_request(inv)
    execution = inv.execution
    started = execution.clock()
    try:
        response = execution.http.call(request)
        location = _header(response, "Location")
        while response.status == 202 and location and inv.type_properties.get("turnOffAsync") is not True:
            if (execution.clock() - started).total_seconds() >= request.timeout:
                raise WebCallError(f"the asynchronous operation did not finish within {request.timeout:g} seconds")
            execution.sleep(_retry_after(response))
            response = execution.http.call(replace(request, method="GET", url=location, body=None))
            location = _header(response, "Location") or location
    except WebCallError as err:
        raise ActivityFailed(WEB_ERROR, f"Error calling the endpoint '{request.url}'. {err}") from None
    output = _web_output(response, (execution.clock() - started).total_seconds())
    if not 200 <= response.status < 300:
        raise ActivityFailed(
            WEB_ERROR,
            f"Error calling the endpoint '{request.url}'. Response status code: 'ClientSideException"
            f" HttpStatusCode : {response.status}, HttpStatusString: {response.reason}'. Response body:"
            f" {response.text[:500]}",
            output=output,
        )
    return output


def _header(response: WebResponse, name: str) -> str | None:
    low = name.lower()
    return next((v for k, v in response.headers.items() if k.lower() == low), None)


def _retry_after(response: WebResponse) -> float:
    value = _header(response, "Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else ASYNC_POLL_SECONDS
    except ValueError:
        return ASYNC_POLL_SECONDS


def _web_output(response: WebResponse, seconds: float) -> dict[str, Any]:
    """ADF's WebActivity output: the JSON object body's fields (else ``Response``), headers, runtime."""
    try:
        body = json.loads(response.text) if response.text else {}
    except ValueError:
        body = None
    output: dict[str, Any] = dict(body) if isinstance(body, dict) else {"Response": response.text}
    output["ADFWebActivityResponseHeaders"] = dict(response.headers)
    output["effectiveIntegrationRuntime"] = response.effective_runtime or f"{DEFAULT_RUNTIME} (Local)"
    output["executionDuration"] = int(seconds)
    return output


SIMPLE_ACTIVITIES: dict[str, Implementation] = {
    "setvariable": set_variable,
    "appendvariable": append_variable,
    "wait": wait,
    "fail": fail,
    "filter": filter_items,
    "webactivity": web_activity,
}
