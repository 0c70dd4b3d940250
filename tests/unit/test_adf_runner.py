"""Local pipeline runner: ADF control flow and failure semantics, WebActivity against a loopback server.

Time is fake: Wait, retries, Until timeouts and async polling advance ``FakeClock`` instead of sleeping.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from cicd_tools.adf.loader import Factory, PipelineDoc, SourceFile
from cicd_tools.adf.run_model import PipelineRunResult
from cicd_tools.adf.runner import PipelineInvalid, run_pipeline
from cicd_tools.adf.web import DEFAULT_RUNTIME, Origin, RequestsWebCaller, WebRequest, WebResponse
from cicd_tools.cli import main as cli

# --- fakes ------------------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when something sleeps (thread-safe: parallel ForEach sleeps too)."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += timedelta(seconds=seconds)


class RecordingOrigins:
    """Records which runtime each call asked for; knows only ``known`` runtimes (None: any)."""

    def __init__(self, known: set[str] | None = None) -> None:
        self.known = known
        self.asked: list[str | None] = []

    def origin_for(self, runtime: str | None) -> Origin:
        self.asked.append(runtime)
        if runtime is not None and self.known is not None and runtime not in self.known:
            raise LookupError(f"integration runtime '{runtime}' is not defined")
        return Origin(name=runtime or DEFAULT_RUNTIME)


class FakeTokens:
    def __init__(self) -> None:
        self.resources: list[str] = []

    def get_token(self, resource: str) -> str:
        self.resources.append(resource)
        return f"token-for-{resource}"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class JobServer:
    """A job API: POST /jobs starts a job, GET /jobs/job-1 reports Running until ``polls_to_finish`` polls."""

    polls_to_finish: int = 3
    final_status: str = "Completed"
    flaky_failures: int = 0
    seen: list[Seen] = field(default_factory=list)
    polls: int = 0
    async_polls: int = 0
    base: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], str]:
        as_json = {"Content-Type": "application/json"}
        if method == "POST" and path == "/jobs":
            return 200, as_json, json.dumps({"jobId": "job-1"})
        if path == "/jobs/job-1":
            with self.lock:
                self.polls += 1
                done = self.polls >= self.polls_to_finish
            return 200, as_json, json.dumps({"status": self.final_status if done else "Running"})
        if path == "/echo":
            return 200, as_json, json.dumps({"value": query.get("value", [""])[0]})
        if path == "/flaky":
            with self.lock:
                self.flaky_failures -= 1
                failing = self.flaky_failures >= 0
            return (500, as_json, '{"error": "boom"}') if failing else (200, as_json, '{"ok": true}')
        if path == "/async":
            return 202, {"Location": f"{self.base}/ops/1", "Retry-After": "7"}, ""
        if path == "/ops/1":
            self.async_polls += 1
            if self.async_polls < 2:
                return 202, {"Location": f"{self.base}/ops/1"}, ""
            return 200, as_json, json.dumps({"done": True})
        if path == "/text":
            return 200, {"Content-Type": "text/plain"}, "hello"
        if path in ("/at-cap", "/over-cap"):  # ADF's documented WebActivity output cap: 4 MB
            size = 4 * 1024 * 1024 + (1 if path == "/over-cap" else 0)
            return 200, as_json, json.dumps({"pad": ""}).replace('""', '"' + "x" * (size - 11) + '"')
        return 404, as_json, '{"error": "not found"}'


@pytest.fixture
def server() -> Iterator[JobServer]:
    state = JobServer()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            url = urlparse(self.path)
            with state.lock:
                state.seen.append(Seen(self.command, url.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status, headers, text = state.answer(self.command, url.path, parse_qs(url.query))
            payload = text.encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@dataclass
class Harness:
    clock: FakeClock
    tokens: FakeTokens
    http: RequestsWebCaller

    def run(self, resource: dict[str, Any], **kwargs: Any) -> PipelineRunResult:
        return run_pipeline(resource, http=self.http, clock=self.clock, sleep=self.clock.sleep, **kwargs)


@pytest.fixture
def harness() -> Harness:
    tokens = FakeTokens()
    return Harness(FakeClock(), tokens, RequestsWebCaller(tokens=tokens, origins=RecordingOrigins()))


def act(name: str, kind: str, depends: list[tuple[str, list[str]]] | None = None, **tp: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "typeProperties": tp,
        "dependsOn": [{"activity": a, "dependencyConditions": c} for a, c in (depends or [])],
    }


def fail(name: str, depends: list[tuple[str, list[str]]] | None = None, code: str = "E1") -> dict[str, Any]:
    return act(name, "Fail", depends, message=f"{name} failed", errorCode=code)


def ok(name: str, depends: list[tuple[str, list[str]]] | None = None) -> dict[str, Any]:
    return act(name, "Wait", depends, waitTimeInSeconds=1)


def pipe(
    *activities: dict[str, Any],
    name: str = "pl",
    parameters: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {"activities": list(activities), "parameters": parameters or {}, "variables": variables or {}},
    }


# --- the acceptance pipeline: Until + WebActivity + IfCondition + Fail -------------------------------


def polling_pipeline() -> dict[str, Any]:
    msi = {"type": "MSI", "resource": "https://ml.azure.com/"}
    via = {"referenceName": "ManagedVnetIR", "type": "IntegrationRuntimeReference"}
    submit = act(
        "Submit",
        "WebActivity",
        method="POST",
        url={"value": "@concat(pipeline().parameters.baseUrl, '/jobs')", "type": "Expression"},
        body={"run": "@pipeline().RunId"},
        authentication=msi,
        connectVia=via,
    )
    check = act(
        "Check",
        "WebActivity",
        method="GET",
        authentication=msi,
        connectVia=via,
        url="@{pipeline().parameters.baseUrl}/jobs/@{activity('Submit').output.jobId}",
    )
    record = act(
        "Record",
        "SetVariable",
        [("Check", ["Succeeded"])],
        variableName="status",
        value="@activity('Check').output.status",
    )
    pause = act("Pause", "Wait", [("Record", ["Succeeded"])], waitTimeInSeconds=30)
    poll = act(
        "Poll",
        "Until",
        [("Submit", ["Succeeded"])],
        timeout="0.00:10:00",
        activities=[check, record, pause],
        expression={"value": "@not(equals(variables('status'), 'Running'))", "type": "Expression"},
    )
    done = act("Done", "SetVariable", variableName="result", value="@concat('job ', variables('status'))")
    boom = act("Boom", "Fail", message="@concat('job ended ', variables('status'))", errorCode="JobFailed")
    branch = act(
        "IsDone",
        "IfCondition",
        [("Poll", ["Succeeded"])],
        expression="@equals(variables('status'), 'Completed')",
        ifTrueActivities=[done],
        ifFalseActivities=[boom],
    )
    return pipe(
        submit,
        poll,
        branch,
        parameters={"baseUrl": {"type": "String"}},
        variables={"status": {"type": "String", "defaultValue": "Running"}, "result": {"type": "String"}},
    )


def test_polling_pipeline_succeeds_when_the_job_completes(server: JobServer, harness: Harness) -> None:
    result = harness.run(polling_pipeline(), parameters={"baseUrl": server.base})
    assert result.status == "Succeeded" and result.message == ""
    assert [(r.activity_name, r.status) for r in result.activity_runs] == [
        ("Submit", "Succeeded"),
        ("Poll", "Succeeded"),
        *[(name, "Succeeded") for _ in range(3) for name in ("Check", "Record", "Pause")],
        ("IsDone", "Succeeded"),
        ("Done", "Succeeded"),
    ]
    assert [r.iteration for r in result.activity_runs if r.activity_name == "Check"] == [0, 1, 2]
    assert harness.clock.sleeps == [30.0, 30.0, 30.0]  # no real sleeping: Wait went through the fake clock
    assert result.activity("Done").output == {"name": "result", "value": "job Completed"}
    assert result.duration_ms == 90_000
    submit = server.seen[0]
    assert (submit.method, submit.path) == ("POST", "/jobs")
    assert json.loads(submit.body) == {"run": result.run_id}
    assert [s.path for s in server.seen[1:]] == ["/jobs/job-1"] * 3


def test_polling_pipeline_fails_through_the_fail_branch(server: JobServer, harness: Harness) -> None:
    server.final_status = "Failed"
    result = harness.run(polling_pipeline(), parameters={"baseUrl": server.base})
    assert result.status == "Failed"
    statuses = result.statuses()
    assert (statuses["Poll"], statuses["IsDone"], statuses["Boom"]) == ("Succeeded", "Failed", "Failed")
    assert "Done" not in statuses  # the other branch never ran
    assert result.activity("Boom").to_dict()["error"] == {
        "errorCode": "JobFailed",
        "message": "job ended Failed",
        "failureType": "UserError",
        "target": "Boom",
    }
    assert result.activity("IsDone").error == {
        "errorCode": "JobFailed",
        "failureType": "UserError",
        "target": "IsDone",
        "message": (
            "Activity failed because an inner activity failed; Inner activity name: Boom, Error: job ended Failed"
        ),
    }
    assert result.message.startswith("Operation on target IsDone failed: Activity failed because an inner")


def test_until_fails_at_its_timeout_on_the_fake_clock(server: JobServer, harness: Harness) -> None:
    server.polls_to_finish = 10_000
    result = harness.run(polling_pipeline(), parameters={"baseUrl": server.base})
    poll = result.activity("Poll")
    assert (result.status, poll.status) == ("Failed", "Failed")
    assert poll.error is not None and poll.error["errorCode"] == "ActivityTimedOut"
    assert harness.clock.sleeps == [30.0] * 20  # 10 minutes of 30 s waits, then the timeout
    assert result.statuses()["IsDone"] == "Skipped"


def test_web_activity_sends_the_msi_token_for_the_resource_asked(server: JobServer, harness: Harness) -> None:
    harness.run(polling_pipeline(), parameters={"baseUrl": server.base})
    assert harness.tokens.resources[0] == "https://ml.azure.com/"
    assert server.seen[0].headers["authorization"] == "Bearer token-for-https://ml.azure.com/"


# --- connectVia -------------------------------------------------------------------------------------


def test_connect_via_inside_type_properties_picks_the_origin_and_root_level_is_ignored(
    server: JobServer, harness: Harness
) -> None:
    via = {"referenceName": "ManagedVnetIR", "type": "IntegrationRuntimeReference"}
    inside = act("Inside", "WebActivity", method="GET", url=f"{server.base}/echo?value=a", connectVia=via)
    root = act("Root", "WebActivity", method="GET", url=f"{server.base}/echo?value=b")
    root["connectVia"] = via  # where ADF ignores it
    result = harness.run(pipe(inside, root))
    assert result.succeeded
    assert harness.http.origins.asked == ["ManagedVnetIR", None]  # type: ignore[attr-defined]
    assert result.activity("Inside").output["effectiveIntegrationRuntime"] == "ManagedVnetIR (Local)"
    assert result.activity("Root").output["effectiveIntegrationRuntime"].startswith("AutoResolveIntegrationRuntime")


def test_connect_via_to_an_unknown_runtime_fails_the_activity(server: JobServer) -> None:
    http = RequestsWebCaller(origins=RecordingOrigins(known={"ManagedVnetIR"}))
    via = {"referenceName": "Typo", "type": "IntegrationRuntimeReference"}
    clock = FakeClock()
    result = run_pipeline(
        pipe(act("Call", "WebActivity", method="GET", url=f"{server.base}/echo", connectVia=via)),
        http=http,
        clock=clock,
        sleep=clock.sleep,
    )
    assert result.status == "Failed" and server.seen == []
    assert "Typo" in result.activity("Call").error["message"]  # type: ignore[index]


# --- WebActivity details ----------------------------------------------------------------------------


def test_web_activity_output_has_body_fields_headers_and_runtime(server: JobServer, harness: Harness) -> None:
    result = harness.run(
        pipe(
            act("Echo", "WebActivity", method="GET", url=f"{server.base}/echo?value=x"),
            act("Text", "WebActivity", method="GET", url=f"{server.base}/text"),
        )
    )
    echo = result.activity("Echo").output
    assert echo["value"] == "x" and echo["ADFWebActivityResponseHeaders"]["Content-Type"] == "application/json"
    assert result.activity("Text").output["Response"] == "hello"


def test_web_activity_output_over_4_mb_fails_the_activity_and_at_4_mb_passes(
    server: JobServer, harness: Harness
) -> None:
    """"The maximum supported output response payload size is 4 MB" (learn.microsoft.com, Web activity)."""
    result = harness.run(pipe(act("Big", "WebActivity", method="GET", url=f"{server.base}/over-cap")))
    big = result.activity("Big")
    assert big.status == "Failed" and "4 MB" in big.error["message"]
    result = harness.run(pipe(act("AtCap", "WebActivity", method="GET", url=f"{server.base}/at-cap")))
    assert result.succeeded and len(result.activity("AtCap").output["pad"]) == 4 * 1024 * 1024 - 11


def test_web_activity_error_status_fails_with_2108_and_keeps_the_response(server: JobServer, harness: Harness) -> None:
    result = harness.run(pipe(act("Missing", "WebActivity", method="GET", url=f"{server.base}/missing")))
    run = result.activity("Missing")
    assert run.status == "Failed" and run.error is not None and run.error["errorCode"] == "2108"
    assert "HttpStatusCode : 404" in run.error["message"]
    assert run.output["error"] == "not found"


def test_retry_policy_retries_with_the_interval_on_the_fake_clock(server: JobServer, harness: Harness) -> None:
    server.flaky_failures = 2
    flaky = act("Flaky", "WebActivity", method="GET", url=f"{server.base}/flaky")
    flaky["policy"] = {"retry": 3, "retryIntervalInSeconds": 60}
    result = harness.run(pipe(flaky))
    assert result.succeeded
    assert [(r.status, r.retry_attempt) for r in result.activity_runs] == [
        ("Failed", 0),
        ("Failed", 1),
        ("Succeeded", 2),
    ]
    assert harness.clock.sleeps == [60.0, 60.0]


def test_async_202_with_location_is_polled_until_done(server: JobServer, harness: Harness) -> None:
    result = harness.run(pipe(act("Async", "WebActivity", method="POST", url=f"{server.base}/async", body={})))
    assert result.activity("Async").output["done"] is True
    assert [s.path for s in server.seen] == ["/async", "/ops/1", "/ops/1"]
    assert harness.clock.sleeps == [7.0, 10.0]  # Retry-After, then the default poll interval


def test_async_polling_is_off_with_turn_off_async(server: JobServer, harness: Harness) -> None:
    result = harness.run(
        pipe(act("Async", "WebActivity", method="POST", url=f"{server.base}/async", body={}, turnOffAsync=True))
    )
    assert result.succeeded and [s.path for s in server.seen] == ["/async"]


class RecordingCaller:
    """A WebCaller that answers 200 {} and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[WebRequest] = []

    def call(self, request: WebRequest) -> WebResponse:
        self.requests.append(request)
        return WebResponse(200, {}, "{}")


@pytest.mark.parametrize(
    ("extra", "policy", "expected"),
    [
        ({}, {}, 60.0),
        ({"httpRequestTimeout": "00:02:00"}, {}, 120.0),
        ({"httpRequestTimeout": "00:30:00"}, {}, 600.0),
        ({"httpRequestTimeout": "00:05:00"}, {"timeout": "0.00:00:45"}, 45.0),
    ],
)
def test_web_activity_request_timeout_follows_http_request_timeout_and_policy(
    extra: dict[str, Any], policy: dict[str, Any], expected: float
) -> None:
    caller = RecordingCaller()
    call = act("Call", "WebActivity", method="GET", url="https://example.invalid/x", **extra)
    call["policy"] = policy
    clock = FakeClock()
    assert run_pipeline(pipe(call), http=caller, clock=clock, sleep=clock.sleep).succeeded
    assert caller.requests[0].timeout == expected


# --- dependency conditions and pipeline status --------------------------------------------------------


def test_skipped_propagates_down_a_success_chain(harness: Harness) -> None:
    result = harness.run(pipe(fail("A"), ok("B", [("A", ["Succeeded"])]), ok("C", [("B", ["Succeeded"])])))
    assert result.statuses() == {"A": "Failed", "B": "Skipped", "C": "Skipped"}
    assert result.status == "Failed"
    assert [r["activityName"] for r in result.query_activity_runs()] == ["A"]  # ADF lists what ran


def test_try_catch_pipeline_succeeds_when_the_failure_path_succeeds(harness: Harness) -> None:
    result = harness.run(pipe(fail("Try"), ok("Catch", [("Try", ["Failed"])])))
    assert result.statuses() == {"Try": "Failed", "Catch": "Succeeded"}
    assert result.status == "Succeeded"


def test_try_catch_pipeline_succeeds_when_nothing_fails(harness: Harness) -> None:
    result = harness.run(pipe(ok("Try"), ok("Catch", [("Try", ["Failed"])])))
    assert result.statuses() == {"Try": "Succeeded", "Catch": "Skipped"} and result.status == "Succeeded"


def test_do_if_else_pipeline_fails_even_though_the_failure_path_succeeds(harness: Harness) -> None:
    result = harness.run(
        pipe(fail("Do"), ok("OnSuccess", [("Do", ["Succeeded"])]), ok("OnFailure", [("Do", ["Failed"])]))
    )
    assert result.statuses() == {"Do": "Failed", "OnSuccess": "Skipped", "OnFailure": "Succeeded"}
    assert result.status == "Failed" and result.message == "Operation on target Do failed: Do failed"


def test_do_if_skip_else_pipeline_succeeds(harness: Harness) -> None:
    result = harness.run(
        pipe(
            fail("Do"),
            ok("OnSuccess", [("Do", ["Succeeded"])]),
            ok("OnFailure", [("Do", ["Failed"])]),
            ok("Dummy", [("OnSuccess", ["Skipped"])]),
        )
    )
    assert result.statuses() == {"Do": "Failed", "OnSuccess": "Skipped", "OnFailure": "Succeeded", "Dummy": "Succeeded"}
    assert result.status == "Succeeded"


def test_completed_runs_after_success_or_failure_but_not_after_skip(harness: Harness) -> None:
    result = harness.run(
        pipe(
            fail("A"),
            ok("AfterA", [("A", ["Completed"])]),
            ok("Gate", [("A", ["Succeeded"])]),
            ok("AfterGate", [("Gate", ["Completed"])]),
        )
    )
    assert result.statuses() == {"A": "Failed", "AfterA": "Succeeded", "Gate": "Skipped", "AfterGate": "Skipped"}
    assert result.status == "Failed"  # AfterGate is a skipped leaf: judged by Gate (skipped), then A (failed)


def test_an_activity_runs_only_when_all_its_dependencies_are_met(harness: Harness) -> None:
    result = harness.run(
        pipe(
            ok("A"),
            fail("B"),
            ok("Both", [("A", ["Succeeded"]), ("B", ["Failed"])]),
            ok("Neither", [("A", ["Succeeded"]), ("B", ["Succeeded"])]),
        )
    )
    assert result.statuses()["Both"] == "Succeeded" and result.statuses()["Neither"] == "Skipped"


def test_inactive_activity_is_not_run_and_takes_its_marked_status(harness: Harness) -> None:
    skipped = fail("Off")
    skipped.update({"state": "Inactive", "onInactiveMarkAs": "Succeeded"})
    result = harness.run(pipe(skipped, ok("Next", [("Off", ["Succeeded"])])))
    assert result.statuses() == {"Off": "Succeeded", "Next": "Succeeded"} and result.succeeded


def test_unsupported_activity_type_fails_with_a_clear_error(harness: Harness) -> None:
    result = harness.run(pipe(act("Copy it", "Copy", source={}, sink={})))
    error = result.activity("Copy it").error
    assert error is not None and error["errorCode"] == "UnsupportedActivity" and "'Copy'" in error["message"]


def test_expression_error_fails_the_activity_as_invalid_template(harness: Harness) -> None:
    result = harness.run(
        pipe(act("S", "SetVariable", variableName="v", value="@div(1, 0)"), variables={"v": {"type": "String"}})
    )
    error = result.activity("S").error
    assert result.status == "Failed" and error is not None and error["errorCode"] == "InvalidTemplate"


# --- variables, Switch, Filter, ForEach -----------------------------------------------------------------


def test_switch_runs_the_matching_case_or_the_default(harness: Harness) -> None:
    def switch(on: str) -> dict[str, Any]:
        return act(
            "Sw",
            "Switch",
            on=on,
            cases=[{"value": "a", "activities": [ok("CaseA")]}],
            defaultActivities=[ok("Default")],
        )

    assert "CaseA" in harness.run(pipe(switch("a"))).statuses()
    assert set(harness.run(pipe(switch("@concat('z', 'z')"))).statuses()) == {"Sw", "Default"}


def test_filter_output_is_shaped_like_adf(harness: Harness) -> None:
    result = harness.run(pipe(act("F", "Filter", items="@createArray(1, 5, 10)", condition="@greater(item(), 3)")))
    assert result.activity("F").output == {"ItemsCount": 3, "FilteredItemsCount": 2, "Value": [5, 10]}


def test_foreach_batched_gives_each_iteration_its_own_item_and_outputs(server: JobServer, harness: Harness) -> None:
    echo = act("Echo", "WebActivity", method="GET", url="@{pipeline().parameters.base}/echo?value=@{item()}")
    add = act(
        "Add",
        "AppendVariable",
        [("Echo", ["Succeeded"])],
        variableName="seen",
        value="@concat(string(item()), '=', activity('Echo').output.value)",
    )
    loop = act("Loop", "ForEach", items="@range(1, 7)", isSequential=False, batchCount=3, activities=[echo, add])
    result = harness.run(
        pipe(
            loop,
            ok("After", [("Loop", ["Succeeded"])]),
            parameters={"base": {"type": "String"}},
            variables={"seen": {"type": "Array", "defaultValue": []}},
        ),
        parameters={"base": server.base},
    )
    assert result.succeeded
    assert [r.iteration for r in result.activity_runs if r.activity_name == "Echo"] == list(range(7))
    final = harness.run(
        pipe(
            loop,
            act("Read", "SetVariable", [("Loop", ["Succeeded"])], variableName="copy", value="@variables('seen')"),
            parameters={"base": {"type": "String"}},
            variables={"seen": {"type": "Array", "defaultValue": []}, "copy": {"type": "Array"}},
        ),
        parameters={"base": server.base},
    )
    assert sorted(final.activity("Read").output["value"]) == [f"{i}={i}" for i in range(1, 8)]


def test_foreach_sequential_keeps_item_order_and_fails_after_all_iterations(harness: Harness) -> None:
    add = act("Add", "AppendVariable", variableName="order", value="@item()")
    boom = act("Boom", "Fail", message="@concat('bad ', string(item()))", errorCode="X")
    gate = act(
        "Gate", "IfCondition", [("Add", ["Succeeded"])], expression="@equals(item(), 2)", ifTrueActivities=[boom]
    )
    loop = act("Loop", "ForEach", items="@createArray(1, 2, 3)", isSequential=True, activities=[add, gate])
    read = act("Read", "SetVariable", [("Loop", ["Failed"])], variableName="copy", value="@variables('order')")
    result = harness.run(pipe(loop, read, variables={"order": {"type": "Array"}, "copy": {"type": "Array"}}))
    assert result.activity("Read").output["value"] == [1, 2, 3]  # the failing iteration did not stop the loop
    assert result.activity("Loop").status == "Failed" and result.status == "Succeeded"  # caught by Read


def test_parallel_foreach_loses_no_appends(harness: Harness) -> None:
    add = act("Add", "AppendVariable", variableName="all", value="@item()")
    loop = act("Loop", "ForEach", items="@range(0, 60)", batchCount=12, activities=[add])
    read = act("Read", "SetVariable", [("Loop", ["Succeeded"])], variableName="copy", value="@variables('all')")
    result = harness.run(pipe(loop, read, variables={"all": {"type": "Array"}, "copy": {"type": "Array"}}))
    assert sorted(result.activity("Read").output["value"]) == list(range(60))


def test_basic_authentication_is_sent_but_not_recorded_in_the_input(server: JobServer, harness: Harness) -> None:
    auth = {"type": "Basic", "username": "u", "password": {"type": "SecureString", "value": "s3cret"}}
    result = harness.run(pipe(act("Call", "WebActivity", method="GET", url=f"{server.base}/echo", authentication=auth)))
    assert server.seen[0].headers["authorization"] == "Basic dTpzM2NyZXQ="
    assert "s3cret" not in json.dumps(result.to_dict()) and "dTpzM2NyZXQ" not in json.dumps(result.to_dict())


def test_extra_activity_implementations_can_be_plugged_in(harness: Harness) -> None:
    def fake_copy(inv: Any) -> Any:
        return {"rowsCopied": len(inv.evaluate(inv.type_properties["rows"]))}

    result = harness.run(pipe(act("Copy it", "Copy", rows="@createArray(1, 2)")), implementations={"Copy": fake_copy})
    assert result.activity("Copy it").output == {"rowsCopied": 2}


def test_an_implementation_that_raises_fails_its_activity_as_a_system_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(inv: Any) -> Any:
        raise KeyError("oops")

    result = harness.run(pipe(act("B", "Broken"), ok("After", [("B", ["Failed"])])), implementations={"Broken": broken})
    error = result.activity("B").error
    assert error is not None and (error["errorCode"], error["failureType"]) == ("InternalServerError", "SystemError")
    assert result.succeeded and "activity B (Broken) raised" in caplog.text


# --- ExecutePipeline --------------------------------------------------------------------------------


def factory_with(*pipelines: dict[str, Any]) -> Factory:
    docs = {p["name"]: PipelineDoc(p["name"], p, SourceFile(Path(f"{p['name']}.json"), "", p)) for p in pipelines}
    return Factory(pipelines=docs, global_parameters={"env": {"type": "String", "value": "test"}})


def test_execute_pipeline_runs_the_child_with_parameters_and_reads_its_return_value(harness: Harness) -> None:
    ret = act(
        "Ret",
        "SetVariable",
        variableName="pipelineReturnValue",
        setSystemVariable=True,
        value=[
            {
                "key": "greeting",
                "value": {
                    "type": "Expression",
                    "content": "@concat(pipeline().parameters.who, '@', pipeline().globalParameters.env)",
                },
            },
            {"key": "fixed", "value": {"type": "Int", "content": 7}},
        ],
    )
    child = pipe(ret, name="child", parameters={"who": {"type": "String"}})
    call = act(
        "Call",
        "ExecutePipeline",
        pipeline={"referenceName": "child", "type": "PipelineReference"},
        parameters={"who": "@pipeline().parameters.name"},
        waitOnCompletion=True,
    )
    use = act(
        "Use",
        "SetVariable",
        [("Call", ["Succeeded"])],
        variableName="v",
        value="@activity('Call').output.pipelineReturnValue.greeting",
    )
    parent = pipe(
        call, use, name="parent", parameters={"name": {"type": "String"}}, variables={"v": {"type": "String"}}
    )
    result = harness.run(parent, parameters={"name": "ada"}, factory=factory_with(parent, child))
    assert result.succeeded and result.activity("Use").output["value"] == "ada@test"
    [child_run] = result.child_runs
    assert result.activity("Call").output == {
        "pipelineName": "child",
        "pipelineRunId": child_run.run_id,
        "pipelineReturnValue": {"greeting": "ada@test", "fixed": 7},
    }
    assert child_run.invoked_by["pipelineRunId"] == result.run_id


def test_execute_pipeline_failure_fails_the_activity_only_when_waiting(harness: Harness) -> None:
    child = pipe(fail("Broken", code="ChildError"), name="child")

    def parent(wait: bool) -> dict[str, Any]:
        return pipe(
            act(
                "Call",
                "ExecutePipeline",
                pipeline={"referenceName": "child", "type": "PipelineReference"},
                waitOnCompletion=wait,
            ),
            name="parent",
        )

    waited = harness.run(parent(True), factory=factory_with(child))
    assert waited.status == "Failed"
    assert waited.activity("Call").error["errorCode"] == "ChildError"  # type: ignore[index]
    assert "Operation on target Broken failed" in waited.activity("Call").error["message"]  # type: ignore[index]
    fire_and_forget = harness.run(parent(False), factory=factory_with(child))
    assert fire_and_forget.succeeded and fire_and_forget.child_runs[0].status == "Failed"


def test_execute_pipeline_of_an_unknown_pipeline_fails(harness: Harness) -> None:
    result = harness.run(
        pipe(act("Call", "ExecutePipeline", pipeline={"referenceName": "ghost"})), factory=factory_with()
    )
    assert result.activity("Call").error["errorCode"] == "PipelineNotFound"  # type: ignore[index]


# --- refusals and result shape ------------------------------------------------------------------------


def test_observer_sees_every_activity_run_as_it_starts_and_ends(harness: Harness) -> None:
    seen: list[tuple[str, str]] = []
    loop = act("Loop", "ForEach", items="@createArray(1, 2)", isSequential=True, activities=[ok("Inner")])
    result = harness.run(
        pipe(loop, fail("Boom", [("Loop", ["Succeeded"])]), ok("Never", [("Boom", ["Succeeded"])])),
        observer=lambda run: seen.append((run.activity_name, run.status)),
    )
    assert seen == [
        ("Loop", "InProgress"),
        ("Inner", "InProgress"),
        ("Inner", "Succeeded"),
        ("Inner", "InProgress"),
        ("Inner", "Succeeded"),
        ("Loop", "Succeeded"),
        ("Boom", "InProgress"),
        ("Boom", "Failed"),
        ("Never", "Skipped"),
    ]
    assert len([s for s in seen if s[1] != "InProgress"]) == len(result.activity_runs)


def test_missing_required_parameter_is_refused_before_running(harness: Harness) -> None:
    with pytest.raises(PipelineInvalid, match="runDate"):
        harness.run(pipe(ok("A"), parameters={"runDate": {"type": "String"}}))


@pytest.mark.parametrize(
    ("declared", "given", "expected"),
    [
        ("String", 1, "1"),
        ("string", True, "True"),
        ("Int", "42", 42),
        ("Float", "1.5", 1.5),
        ("Bool", "false", False),
        ("Array", "[1, 2]", [1, 2]),
        ("Object", '{"a": 1}', {"a": 1}),
        ("Int", "x", "x"),
        ("String", "s", "s"),
    ],
)
def test_parameters_take_their_declared_type(harness: Harness, declared: str, given: Any, expected: Any) -> None:
    set_v = act("S", "SetVariable", variableName="v", value="@pipeline().parameters.p")
    result = harness.run(
        pipe(set_v, parameters={"p": {"type": declared}}, variables={"v": {"type": "String"}}), parameters={"p": given}
    )
    assert result.activity("S").output["value"] == expected


def test_dependency_on_an_unknown_activity_is_refused(harness: Harness) -> None:
    with pytest.raises(PipelineInvalid, match="Ghost"):
        harness.run(pipe(ok("A", [("Ghost", ["Succeeded"])])))


def test_run_result_dict_is_shaped_like_adf_runs(harness: Harness) -> None:
    data = harness.run(pipe(ok("A"))).to_dict()
    assert {"runId", "pipelineName", "status", "message", "runStart", "runEnd", "durationInMs", "parameters"} <= set(
        data
    )
    run = data["activityRuns"][0]
    assert {
        "activityName",
        "activityType",
        "status",
        "input",
        "output",
        "error",
        "activityRunStart",
        "activityRunEnd",
        "durationInMs",
        "activityRunId",
        "pipelineRunId",
    } <= set(run)
    assert run["activityRunStart"] == "2024-05-01T06:00:00.0000000Z" and run["durationInMs"] == 1000
    assert run["error"] == {"errorCode": "", "message": "", "failureType": "", "target": "A"}


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_run_local_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            pipe(
                act("S", "SetVariable", variableName="v", value="@pipeline().parameters.p"),
                parameters={"p": {"type": "Int"}},
                variables={"v": {"type": "Int"}},
            )
        )
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(pipe(fail("Boom"))))
    assert cli.main(["--ci", "plain", "--output", "json", "adf", "run-local", str(good), "--param", "p=5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "Succeeded" and data["activityRuns"][0]["output"] == {"name": "v", "value": 5}
    assert cli.main(["--ci", "plain", "adf", "run-local", str(bad)]) == 4
    out = capsys.readouterr().out
    assert "Boom" in out and "Failed" in out and "E1: Boom failed" in out
    assert cli.main(["--ci", "plain", "adf", "run-local", str(good)]) == 2  # required parameter missing


def test_direct_origins_resolve_mapped_host_names_like_a_hosts_file() -> None:
    from cicd_tools.adf.web import DirectOrigins

    origins = DirectOrigins({"acct.blob.core.windows.net": "https://127.0.0.1:9/acct/"})
    origin = origins.origin_for(None)
    assert origin.resolve is not None
    assert origin.resolve("https://acct.blob.core.windows.net/c/b.json?x=1") == "https://127.0.0.1:9/acct/c/b.json?x=1"
    assert origin.resolve("https://other.example/p") == "https://other.example/p"
    assert DirectOrigins().origin_for("IR").resolve is None
