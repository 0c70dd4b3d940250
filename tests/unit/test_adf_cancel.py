"""cancel_run_and_jobs: the run is cancelled, then every job it (or a child run) submitted that has not ended.

Fakes in the 2018-06-01 shapes (a parent run whose ExecutePipeline child PUT two jobs); time is fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cicd_tools.adf.cancel import cancel_run_and_jobs
from cicd_tools.adf.client import ArmCalls, FactoryRef

REF = FactoryRef("sub", "rg", "adf-x")
WS = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def submit(job: str, start: str) -> dict[str, Any]:
    return {"activityName": "SubmitJob", "activityType": "WebActivity", "activityRunStart": start,
            "input": {"method": "PUT", "url": f"https://management.azure.com{WS}/jobs/{job}?api-version=2025-09-01"},
            "output": {}}


class Factory:
    def __init__(self) -> None:
        self.cancelled: list[tuple[str, bool]] = []
        self.status = {"parent": "InProgress", "child": "InProgress"}

    def get_run(self, ref: FactoryRef, run_id: str) -> dict[str, Any]:
        return {"runId": run_id, "pipelineName": "p", "status": self.status[run_id],
                "runStart": "2026-01-02T10:00:00Z", "parameters": {"assetName": "training-code"}}

    def cancel_run(self, ref: FactoryRef, run_id: str, *, recursive: bool = True) -> None:
        self.cancelled.append((run_id, recursive))
        self.status = {k: "Cancelled" for k in self.status}

    def query_activity_runs(self, ref: FactoryRef, run_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if run_id == "parent":
            return {"value": [{"activityName": "Train", "activityType": "ExecutePipeline",
                               "activityRunStart": "2026-01-02T10:00:01Z", "output": {"pipelineRunId": "child"}}]}
        return {"value": [submit("done-1", "2026-01-02T10:00:02Z"), submit("busy-1", "2026-01-02T10:00:03Z")]}


class Jobs:
    def __init__(self) -> None:
        self.status = {"done-1": "Completed", "busy-1": "Running"}
        self.cancel_calls: list[str] = []
        self.closed = False

    def get_job(self, name: str) -> dict[str, Any]:
        return {"name": name, "properties": {"status": self.status[name]}}

    def cancel_job(self, name: str) -> bool:
        self.cancel_calls.append(name)
        self.status[name] = "CancelRequested"
        return True

    def close(self) -> None:
        self.closed = True


def test_the_run_is_cancelled_then_only_the_jobs_still_going() -> None:
    clock, factory, jobs = Clock(), Factory(), Jobs()
    workspaces: list[str] = []

    def jobs_for(path: str) -> Jobs:
        workspaces.append(path)
        return jobs

    def wind_down(seconds: float) -> None:  # Azure ML takes a moment: CancelRequested, then Canceled
        clock.sleep(seconds)
        jobs.status = {k: "Canceled" if v == "CancelRequested" else v for k, v in jobs.status.items()}

    result = cancel_run_and_jobs(factory, ArmCalls(sleep=clock.sleep, clock=clock.clock), REF, "parent",
                                 jobs_for=jobs_for, grace=30, clock=clock.clock, sleep=wind_down)
    assert factory.cancelled == [("parent", True)]
    assert jobs.cancel_calls == ["busy-1"]  # the Completed job is left alone
    assert workspaces == [WS] and jobs.closed
    assert result.run_status == "Cancelled" and result.left_running == [] and result.errors == []
    assert {j.name: (j.before, j.status) for j in result.jobs} == {"done-1": ("Completed", "Completed"),
                                                                   "busy-1": ("Running", "Canceled")}
    assert "cancelled Azure ML job(s) busy-1 (Running -> Canceled)" in result.line()


def test_a_job_that_will_not_stop_is_reported_as_left_running_within_the_grace() -> None:
    clock, factory, jobs = Clock(), Factory(), Jobs()
    result = cancel_run_and_jobs(factory, ArmCalls(sleep=clock.sleep, clock=clock.clock), REF, "parent",
                                 jobs_for=lambda path: jobs, grace=10, clock=clock.clock, sleep=clock.sleep)
    assert result.left_running == ["busy-1"] and clock.now <= 10
    assert "STILL RUNNING: busy-1" in result.line()
    assert result.as_dict()["cancelledJobs"] == ["busy-1"]
