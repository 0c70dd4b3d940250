"""Waiting for an ADF run (``cicd_tools.adf.wait``) and the ARM call loop (``cicd_tools.adf.client``), with fakes.

Time is fake: ``FakeTime.sleep`` moves the clock. The fake API plays the service's side from AZURE_FACTS.md §5:
run statuses over time, 429 with Retry-After, activity-run pages with ``continuationToken``.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.adf.client import ArmCalls, FactoryRef, query_activity_runs, query_window
from cicd_tools.adf.run_model import RunCancelled
from cicd_tools.adf.runner import run_pipeline
from cicd_tools.adf.wait import FAST_POLL, describe_run, wait_for_run
from cicd_tools.support.errors import Throttled

REF = FactoryRef("sub", "rg", "adf")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Throttle(Exception):
    def __init__(self, retry_after: str) -> None:
        super().__init__("429 Too Many Requests")
        self.status_code = 429
        self.response = type("R", (), {"headers": {"Retry-After": retry_after}})()


class FakeApi:
    """A run that ends ``Succeeded`` at ``ends_at`` (fake seconds); every call is logged with the time."""

    def __init__(self, time: FakeTime, ends_at: float, throttle_first: int = 0) -> None:
        self.time = time
        self.ends_at = ends_at
        self.throttle_first = throttle_first
        self.log: list[tuple[float, str]] = []
        self.pages: list[dict[str, Any]] = [{"value": [{"activityRunId": "a1", "status": "Succeeded"}]}]
        self.bodies: list[dict[str, Any]] = []

    def get_run(self, ref: FactoryRef, run_id: str) -> dict[str, Any]:
        self.log.append((self.time.now, "get"))
        if self.throttle_first > 0:
            self.throttle_first -= 1
            raise Throttle("7")
        done = self.time.now >= self.ends_at
        return {"runId": run_id, "status": "Succeeded" if done else "InProgress",
                "lastUpdated": str(min(self.time.now, self.ends_at)), "runStart": "2026-12-01T10:00:00.0000000Z",
                "runEnd": "2026-12-01T10:05:00.0000000Z" if done else None}

    def query_activity_runs(self, ref: FactoryRef, run_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.log.append((self.time.now, "query"))
        self.bodies.append(dict(body))
        index = int(body.get("continuationToken") or 0)
        page = dict(self.pages[index])
        if index + 1 < len(self.pages):
            page["continuationToken"] = str(index + 1)
        return page


@pytest.mark.parametrize("ends_at", [0.5, 7.0, 95.0, 1000.0])
def test_the_end_is_detected_within_one_poll_interval(ends_at: float) -> None:
    time = FakeTime()
    api = FakeApi(time, ends_at)
    result = wait_for_run(api, ArmCalls(sleep=time.sleep, clock=time.clock), REF, "r1", timeout=3600, poll=15,
                          clock=time.clock, sleep=time.sleep)
    assert result.run["status"] == "Succeeded" and not result.timed_out
    assert api.log[-1][0] - ends_at <= 15  # seen within one (the longest) poll interval of the end


def test_each_poll_makes_at_most_one_arm_call_even_with_progress() -> None:
    time = FakeTime()
    api = FakeApi(time, 60.0)
    calls = ArmCalls(sleep=time.sleep, clock=time.clock)
    wait_for_run(api, calls, REF, "r1", timeout=3600, poll=15, clock=time.clock, sleep=time.sleep,
                 progress=lambda item: None)
    moments = [t for t, _ in api.log]
    assert len(moments) == len(set(moments)) == calls.calls  # never two calls at the same moment
    gets = [t for t, kind in api.log if kind == "get"]
    assert all(b - a <= 15 for a, b in itertools.pairwise(gets))  # status polls stay on schedule


def test_polls_start_fast_and_back_off_to_the_poll_interval() -> None:
    time = FakeTime()
    api = FakeApi(time, 600.0)
    wait_for_run(api, ArmCalls(sleep=time.sleep, clock=time.clock), REF, "r1", timeout=3600, poll=15,
                 clock=time.clock, sleep=time.sleep)
    assert time.sleeps[0] == 1.0 and max(time.sleeps) == 15
    # the cap is max(2 s, a twentieth of the wait): 2 s up to 40 s, then ~20*ln(300/40) calls until it reaches
    # 15 s at 300 s, then one call per 15 s: about 20 + 40 + 20 for a ten-minute run
    assert len(api.log) < 90


def test_a_young_run_is_polled_at_most_two_seconds_apart() -> None:
    time = FakeTime()
    api = FakeApi(time, 45.0)
    wait_for_run(api, ArmCalls(sleep=time.sleep, clock=time.clock), REF, "r1", timeout=3600, poll=15,
                 clock=time.clock, sleep=time.sleep)
    assert max(time.sleeps) <= FAST_POLL + 0.25  # a 45 s run: the cap is still max(2, 45/20)
    assert time.clock() - 45.0 <= FAST_POLL + 0.25  # its end was seen within one such interval


def test_a_429_on_the_status_poll_is_retried_after_its_retry_after() -> None:
    time = FakeTime()
    api = FakeApi(time, 0.0, throttle_first=2)
    calls = ArmCalls(sleep=time.sleep, clock=time.clock)
    result = wait_for_run(api, calls, REF, "r1", timeout=3600, clock=time.clock, sleep=time.sleep)
    assert result.run["status"] == "Succeeded"
    assert calls.calls == 3 and calls.throttled == 2
    assert time.sleeps[:2] and all(s >= 7 for s in time.sleeps[:2])


def test_throttling_beyond_the_budget_of_a_call_without_a_deadline_is_a_throttled_error() -> None:
    time = FakeTime()
    api = FakeApi(time, 0.0, throttle_first=100)
    with pytest.raises(Throttled):
        ArmCalls(sleep=time.sleep, clock=time.clock, retries=3)("get run", lambda: api.get_run(REF, "r1"))


def test_the_wait_times_out_and_says_so() -> None:
    time = FakeTime()
    api = FakeApi(time, 10_000.0)
    result = wait_for_run(api, ArmCalls(sleep=time.sleep, clock=time.clock), REF, "r1", timeout=60, poll=15,
                          clock=time.clock, sleep=time.sleep)
    assert result.timed_out and result.run["status"] == "InProgress" and time.now <= 60


def test_activity_queries_follow_every_page_with_a_window_wider_than_the_run() -> None:
    time = FakeTime()
    api = FakeApi(time, 0.0)
    api.pages = [{"value": [{"activityRunId": "a1"}]}, {"value": [{"activityRunId": "a2"}]},
                 {"value": [{"activityRunId": "a3"}]}]
    run = {"runId": "r1", "runStart": "2026-12-01T10:00:00.1234567Z", "runEnd": "2026-12-01T10:05:00Z"}
    items = query_activity_runs(api, ArmCalls(), REF, run)
    assert [i["activityRunId"] for i in items] == ["a1", "a2", "a3"]
    after, before = api.bodies[0]["lastUpdatedAfter"], api.bodies[0]["lastUpdatedBefore"]
    assert (after, before) == query_window(run)
    assert after < "2026-12-01T10:00:00" and before > "2026-12-01T10:05:00"


def test_describe_run_follows_execute_pipeline_into_child_runs() -> None:
    class TreeApi(FakeApi):
        def get_run(self, ref: FactoryRef, run_id: str) -> dict[str, Any]:
            return {"runId": run_id, "pipelineName": f"pl-{run_id}", "status": "Failed", "runStart": "2026-12-01"}

        def query_activity_runs(self, ref: FactoryRef, run_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
            if run_id == "parent":
                return {"value": [{"activityName": "Call", "activityType": "ExecutePipeline", "status": "Failed",
                                   "output": {"pipelineRunId": "child"}, "error": {"errorCode": "2108",
                                   "message": "m", "failureType": "UserError", "target": "Call"}}]}
            return {"value": [{"activityName": "Read", "activityType": "WebActivity", "status": "Failed",
                               "error": {"errorCode": "2108", "message": "403 AuthorizationFailure",
                                         "failureType": "UserError", "target": "Read"}}]}

    api = TreeApi(FakeTime(), 0.0)
    report = describe_run(api, ArmCalls(), REF, api.get_run(REF, "parent"))
    assert [c["runId"] for c in report["childRuns"]] == ["child"]
    assert report["childRuns"][0]["activities"][0]["error"]["message"] == "403 AuthorizationFailure"
    assert set(report) >= {"runId", "pipeline", "factory", "status", "message", "runStart", "runEnd",
                           "durationInMs", "parameters", "activities", "childRuns"}


# -- cancellation in the runner ------------------------------------------------------------------------
def test_cancelling_a_run_stops_an_in_flight_wait_and_starts_nothing_else() -> None:
    cancel = threading.Event()
    pipeline = {"name": "pl", "properties": {"activities": [
        {"name": "Long", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 600}},
        {"name": "After", "type": "Wait", "dependsOn": [{"activity": "Long", "dependencyConditions": ["Completed"]}],
         "typeProperties": {"waitTimeInSeconds": 1}}]}}
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    result = run_pipeline(pipeline, cancel=cancel)
    timer.join()
    assert result.status == "Cancelled" and result.message
    assert result.statuses() == {"Long": "Cancelled"}


def test_cancelling_stops_an_until_loop() -> None:
    cancel = threading.Event()
    loop = {"name": "Loop", "type": "Until", "typeProperties": {"expression": "@false", "timeout": "0.01:00:00",
            "activities": [{"name": "Tick", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 5}}]}}
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    result = run_pipeline({"name": "pl", "properties": {"activities": [loop]}}, cancel=cancel)
    timer.join()
    assert result.status == "Cancelled" and result.activity("Loop").status == "Cancelled"


def test_a_cancelled_run_raises_nothing_to_its_caller() -> None:
    cancel = threading.Event()
    cancel.set()
    result = run_pipeline({"name": "pl", "properties": {"activities": [
        {"name": "Never", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 1}}]}}, cancel=cancel)
    assert result.status == "Cancelled" and result.activity_runs == ()
    assert issubclass(RunCancelled, Exception)


# -- start-up ------------------------------------------------------------------------------------------
def test_eval_lint_and_run_local_never_import_the_data_factory_sdk(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.json"
    pipeline.write_text('{"name": "p", "properties": {"variables": {"v": {"type": "String"}}, "activities": ['
                        '{"name": "S", "type": "SetVariable", "typeProperties": {"variableName": "v", "value": "x"}}'
                        "]}}", encoding="utf-8")
    adf = Path(__file__).resolve().parents[2] / "adf"
    script = (
        "import sys\n"
        "from cicd_tools.cli.main import main\n"
        f"codes = [main(['adf', 'eval', '@concat(1, 2)']), main(['adf', 'lint', {str(adf)!r}]),\n"
        f"         main(['adf', 'run-local', {str(pipeline)!r}])]\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('azure.mgmt.datafactory', 'azure.ai.ml')))\n"
        "print(codes, loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[0, 0, 0] []"


def test_sdk_errors_are_classified_with_exit_codes_never_a_crash() -> None:
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

    from cicd_tools.adf.client import classify
    from cicd_tools.support.errors import AuthenticationFailed, AzureError, UsageError

    class Status(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(f"HTTP {status}")
            self.status_code = status

    assert classify(Status(404), "get run").exit_code == 2
    assert isinstance(classify(Status(400), "createRun"), UsageError)
    assert isinstance(classify(Status(429), "get run"), Throttled)
    assert classify(Status(500), "get run").exit_code == 3
    unreachable = classify(ServiceRequestError("connection refused"), "createRun")
    assert isinstance(unreachable, AzureError) and "could not reach" in unreachable.message
    assert isinstance(classify(ClientAuthenticationError("no credential"), "createRun"), AuthenticationFailed)


def test_a_refused_connection_is_retried_twice_then_reported() -> None:
    from azure.core.exceptions import ServiceRequestError

    time = FakeTime()
    calls = ArmCalls(sleep=time.sleep, clock=time.clock)

    def refuse() -> None:
        raise ServiceRequestError("connection refused")

    with pytest.raises(Exception, match="could not reach"):
        calls("createRun", refuse)
    assert calls.calls == 3


def test_the_run_report_masks_sas_signatures_and_tokens() -> None:
    from cicd_tools.cli.adf_cloud import _redacted

    report = {"activities": [{"input": {"url": "https://a.blob.core.windows.net/c/b?sv=1&sig=SECRETSIG"},
                              "output": {"token": "Bearer abc.def.ghi"}}]}
    text = json.dumps(_redacted(report))
    assert "SECRETSIG" not in text and "abc.def.ghi" not in text and "sv=1" in text


def test_a_run_not_yet_visible_after_create_run_is_polled_again() -> None:
    class LateApi(FakeApi):
        def get_run(self, ref: FactoryRef, run_id: str) -> dict[str, Any]:
            if len(self.log) < 2:
                self.log.append((self.time.now, "get"))
                raise type("NotFound", (Exception,), {"status_code": 404})("PipelineRunNotFound")
            return super().get_run(ref, run_id)

    time = FakeTime()
    api = LateApi(time, 5.0)
    result = wait_for_run(api, ArmCalls(sleep=time.sleep, clock=time.clock), REF, "r1", timeout=3600,
                          clock=time.clock, sleep=time.sleep)
    assert result.run["status"] == "Succeeded"


def test_a_run_that_never_becomes_visible_is_reported_after_the_grace() -> None:
    from cicd_tools.adf.client import FactoryNotFound

    class GoneApi(FakeApi):
        def get_run(self, ref: FactoryRef, run_id: str) -> dict[str, Any]:
            raise type("NotFound", (Exception,), {"status_code": 404})("PipelineRunNotFound")

    time = FakeTime()
    with pytest.raises(FactoryNotFound):
        wait_for_run(GoneApi(time, 0.0), ArmCalls(sleep=time.sleep, clock=time.clock), REF, "r1", timeout=3600,
                     clock=time.clock, sleep=time.sleep)
    assert 30 <= time.now <= 60


def test_throttling_until_the_deadline_is_a_timeout_of_the_wait() -> None:
    time = FakeTime()
    api = FakeApi(time, 10_000.0, throttle_first=0)
    calls = ArmCalls(sleep=time.sleep, clock=time.clock, retries=1000)
    first = api.get_run

    def throttled_after_first(ref: FactoryRef, run_id: str) -> dict[str, Any]:
        if api.log:
            api.log.append((time.now, "get"))
            raise Throttle("20")
        return first(ref, run_id)

    api.get_run = throttled_after_first  # type: ignore[method-assign]
    result = wait_for_run(api, calls, REF, "r1", timeout=60, clock=time.clock, sleep=time.sleep)
    assert result.timed_out and result.run["status"] == "InProgress" and time.now <= 60


def test_find_activities_searches_the_run_and_its_children() -> None:
    from cicd_tools.adf.wait import find_activities

    report = {"activities": [{"activityName": "Train", "activityType": "ExecutePipeline"}],
              "childRuns": [{"activities": [{"activityName": "SubmitJob", "activityType": "WebActivity",
                                             "output": {"name": "train-1"}}]},
                            {"activities": [{"activityName": "SubmitJob", "activityType": "WebActivity",
                                             "output": {"name": "validate-1"}}]}]}
    assert [a["output"]["name"] for a in find_activities(report, name="SubmitJob")] == ["train-1", "validate-1"]
    assert [a["activityName"] for a in find_activities(report, activity_type="ExecutePipeline")] == ["Train"]


def test_a_signal_during_a_progress_query_stops_the_wait() -> None:
    from cicd_tools.support.errors import Interrupted

    class SignalledApi(FakeApi):
        def query_activity_runs(self, ref: FactoryRef, run_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
            raise Interrupted("received signal SIGTERM")

    time = FakeTime()
    with pytest.raises(Interrupted):
        wait_for_run(SignalledApi(time, 100.0), ArmCalls(sleep=time.sleep, clock=time.clock), REF, "r1",
                     timeout=3600, clock=time.clock, sleep=time.sleep, progress=lambda item: None)


# --- one deadline, one retry policy (issue 18) -------------------------------------------------------------


def _dropped() -> None:
    from azure.core.exceptions import ServiceResponseError

    raise ServiceResponseError("Connection aborted: RemoteDisconnected")


def test_a_retry_after_that_does_not_fit_waits_out_the_deadline_and_names_the_429() -> None:
    from cicd_tools.adf.client import DeadlineReached

    time = FakeTime()
    calls = ArmCalls(sleep=time.sleep, clock=time.clock, deadline=10.0)
    attempts: list[float] = []

    def throttled() -> None:
        attempts.append(time.now)
        raise Throttle("30")

    with pytest.raises(DeadlineReached, match=r"HTTP 429.*Retry-After 30 s did not fit") as caught:
        calls("get pipeline run r1", throttled)
    assert attempts == [0.0]  # never retried before the server's Retry-After
    assert time.now == 10.0 and caught.value.exit_code == 6
    assert calls.last_seen is not None and calls.last_seen.startswith("HTTP 429")


def test_dropped_connections_are_retried_until_the_deadline_then_name_what_was_seen() -> None:
    from cicd_tools.adf.client import DeadlineReached

    time = FakeTime()
    calls = ArmCalls(sleep=time.sleep, clock=time.clock, deadline=60.0)
    with pytest.raises(DeadlineReached, match="connection failed"):
        calls("get pipeline run r1", _dropped)
    assert calls.calls > 3 and time.now == pytest.approx(60.0)  # more than the old budget of two retries


def test_transient_drops_within_the_deadline_end_in_the_answer() -> None:
    time = FakeTime()
    calls = ArmCalls(sleep=time.sleep, clock=time.clock, deadline=60.0)
    answers = iter([_dropped, _dropped, _dropped, lambda: {"status": "Succeeded"}])
    assert calls("get pipeline run r1", lambda: next(answers)()) == {"status": "Succeeded"}
    assert calls.calls == 4 and calls.last_seen is None


def test_a_refused_connection_fails_after_two_retries_even_with_a_deadline() -> None:
    from azure.core.exceptions import ServiceRequestError

    time = FakeTime()
    calls = ArmCalls(sleep=time.sleep, clock=time.clock, deadline=3600.0)

    def refuse() -> None:
        raise ServiceRequestError("connection refused")

    with pytest.raises(Exception, match="could not reach"):
        calls("createRun", refuse)
    assert calls.calls == 3 and time.now < 60
