"""Finding the jobs an ADF run submitted: azure-mgmt-datafactory against `responses` in the 2018-06-01 shapes."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
import responses
from azure.core.credentials import AccessToken
from azure.mgmt.datafactory import DataFactoryManagementClient

from cicd_tools.aml.adf_jobs import job_name_from_activity, jobs_submitted_by_run
from cicd_tools.support.errors import UsageError

SUB, RG, FACTORY = "12345678-1234-1234-1234-12345678abc", "rg-mlops", "adf-x"
BASE = f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DataFactory/factories/{FACTORY}"
WS = f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/ws"
NOW = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)


class Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("t", 4102444800)


def run_body(run_id: str, name: str) -> dict[str, Any]:
    # PipelineRuns_Get example (2018-06-01)
    return {"runId": run_id, "pipelineName": name, "parameters": {}, "invokedBy": {"id": "x", "name": "Manual"},
            "runStart": "2026-01-02T10:00:00.0000000Z", "runEnd": "2026-01-02T10:20:00.0000000Z",
            "durationInMs": 1200000, "status": "Succeeded", "message": "", "lastUpdated": "2026-01-02T10:20:00Z",
            "annotations": []}


def activity(name: str, kind: str, run_id: str, start: str, *, input: Any = None, output: Any = None) -> dict[str, Any]:
    # ActivityRuns_QueryByPipelineRun example shape
    return {"activityName": name, "activityType": kind, "activityRunId": f"a-{name}", "pipelineName": "p",
            "pipelineRunId": run_id, "status": "Succeeded", "activityRunStart": start,
            "activityRunEnd": start, "durationInMs": 1, "input": input or {}, "output": output or {},
            "error": {"errorCode": "", "message": "", "failureType": "", "target": name}}


def submit(run_id: str, job: str, start: str) -> dict[str, Any]:
    return activity("SubmitJob", "WebActivity", run_id, start,
                    input={"method": "PUT", "url": f"{WS}/jobs/{job}?api-version=2025-09-01", "body": {}},
                    output={"name": job})


@responses.activate
def test_jobs_are_found_in_child_runs_across_continuation_pages_with_a_widened_window() -> None:
    queries: list[dict[str, Any]] = []

    def query(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        queries.append(body)
        run = re.search(r"pipelineruns/([^/]+)/queryActivityruns", request.url)[1]  # type: ignore[index]
        if run == "parent" and not body.get("continuationToken"):
            page = {"value": [activity("Train", "ExecutePipeline", "parent", "2026-01-02T10:00:01Z",
                                       output={"pipelineRunId": "child-1", "pipelineName": "pl_run_aml_job"})],
                    "continuationToken": "page-2"}
        elif run == "parent":
            page = {"value": [activity("Validate", "ExecutePipeline", "parent", "2026-01-02T10:10:00Z",
                                       output={"pipelineRunId": "child-2"})]}
        elif run == "child-1":
            page = {"value": [activity("ReadPointer", "WebActivity", run, "2026-01-02T10:00:02Z",
                                       input={"method": "GET", "url": "https://sa.blob/x/latest.json"}),
                              submit(run, "train-manual-1", "2026-01-02T10:00:03Z"),
                              activity("GetJob", "WebActivity", run, "2026-01-02T10:00:04Z",
                                       input={"method": "GET", "url": f"{WS}/jobs/train-manual-1?api-version=x"})]}
        else:
            page = {"value": [submit(run, "validate-manual-1", "2026-01-02T10:10:03Z")]}
        return 200, {"Content-Type": "application/json"}, json.dumps(page)

    for run_id, name in (("parent", "pl_train_and_validate"), ("child-1", "pl_run_aml_job"),
                         ("child-2", "pl_run_aml_job")):
        responses.get(f"{BASE}/pipelineruns/{run_id}", json=run_body(run_id, name))
    responses.add_callback(responses.POST, re.compile(rf"{re.escape(BASE)}/pipelineruns/[^/]+/queryActivityruns"),
                           callback=query)
    client = DataFactoryManagementClient(Token(), SUB)  # type: ignore[arg-type]
    found = jobs_submitted_by_run(client, RG, FACTORY, "parent", now=lambda: NOW)
    assert [(j.name, j.pipeline_run_id) for j in found] == [("train-manual-1", "child-1"),
                                                            ("validate-manual-1", "child-2")]
    assert [q.get("continuationToken") for q in queries][:2] == [None, "page-2"]
    # The window covers the run with a margin on both sides (a filter is mandatory for this API).
    first = queries[0]
    assert first["lastUpdatedAfter"] < "2026-01-02T10:00:00" and first["lastUpdatedBefore"] > "2026-01-02T12:00:00"


@responses.activate
def test_an_unknown_run_id_is_a_usage_error_naming_it() -> None:
    responses.get(f"{BASE}/pipelineruns/nope", status=404,
                  json={"error": {"code": "PipelineRunNotFound", "message": "Pipeline run not found"}})
    client = DataFactoryManagementClient(Token(), SUB)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="pipeline run nope does not exist"):
        jobs_submitted_by_run(client, RG, FACTORY, "nope", now=lambda: NOW)


@pytest.mark.parametrize(("kind", "given", "expected"), [
    ("WebActivity", {"method": "PUT", "url": f"{WS}/jobs/j-1?api-version=2025-09-01"}, "j-1"),
    ("WebActivity", {"method": "put", "url": f"{WS}/jobs/j-1"}, "j-1"),
    ("WebActivity", {"method": "GET", "url": f"{WS}/jobs/j-1"}, None),
    ("WebActivity", {"method": "POST", "url": f"{WS}/jobs/j-1/cancel"}, None),
    ("WebActivity", {"method": "PUT", "url": f"{WS}/codes/c/versions/1"}, None),
    ("ExecutePipeline", {"method": "PUT", "url": f"{WS}/jobs/j-1"}, None),
])
def test_only_a_web_put_to_a_job_names_a_submitted_job(kind: str, given: dict[str, str], expected: str | None) -> None:
    assert job_name_from_activity(kind, given) == expected
