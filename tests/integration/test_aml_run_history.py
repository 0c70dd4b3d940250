"""A user's own azure-ai-ml script against sandbox jobs: stream, download, child listing, lifecycle and cancel.

What the SDK does is read from its source (azure-ai-ml 1.35.2): ``jobs.stream`` polls run history's ``details`` and
raises ``JobException`` carrying ``details.error`` for a Failed run (``operations/_job_ops_helper.py``,
``stream_logs_until_completion``); ``jobs.list(parent_job_name=…)`` asks run history for the run's children
(``_job_operations.py`` ``list``); ``jobs.download`` refuses a job that is not terminal and otherwise reads the run's
outputs (``_job_operations.py`` ``download``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from cicd_tools.sandbox.runtime import Sandbox
from cicd_tools.sandbox.world.chain import STREAM_AUTH
from tests.integration.test_aml_jobs_sdk import put_job, register, rest_body, run_details, status, wait_terminal

CURATED = "azureml://registries/azureml/environments/sklearn-1.5/versions/1"


@pytest.fixture
def ml(sandbox_env: Sandbox) -> Iterator[Any]:
    from cicd_tools.codeassets.sdk import build_ml_client
    from cicd_tools.codeassets.workspace import WorkspaceRef

    ws = WorkspaceRef(sandbox_env.subscription_id, sandbox_env.resource_group, sandbox_env.layout.workspace,
                      sandbox_env.arm_endpoint)
    yield build_ml_client(ManagedIdentityCredential(), ws)


def submit(ml: Any, command: str) -> str:
    from azure.ai.ml import command as command_job

    code = register(ml, "train", "training-code")
    return str(ml.jobs.create_or_update(command_job(code=code.id, command=command, environment=CURATED,
                                                    compute="aks-gpu", instance_type="gpu-t4")).name)


def test_stream_on_a_failed_job_raises_the_sdks_job_exception_with_the_runs_error(
    sandbox_env: Sandbox, ml: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure.ai.ml.exceptions import JobException

    name = submit(ml, "python train.py --epochs 0")
    assert status(wait_terminal(ml, name)) == "Failed"
    with pytest.raises(JobException) as caught:
        ml.jobs.stream(name)
    # The SDK puts json.dumps(details.error.as_dict()) in the message: the run's code and the log tail.
    assert '"code": "UserError"' in caught.value.message
    assert "--epochs must be at least 1" in caught.value.message
    assert f"RunId: {name}" in capsys.readouterr().out


def test_stream_follows_a_running_job_prints_its_log_and_returns_when_it_completes(
    sandbox_env: Sandbox, ml: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = submit(ml, "echo first-line; sleep 3; echo last-line")
    ml.jobs.stream(name)  # returns (no exception) once the run is Completed
    out = capsys.readouterr().out
    assert "Streaming user_logs/std_log.txt" in out
    assert "first-line" in out and "last-line" in out
    assert "Execution Summary" in out
    assert status(ml.jobs.get(name)) == "Completed"


def test_the_storage_verdict_of_the_key_datastores_scenario_is_the_runs_error_code(
    sandbox_env: Sandbox, ml: Any
) -> None:
    from azure.ai.ml.exceptions import JobException

    code = register(ml, "train", "training-code")
    sandbox_env.control.apply_scenario("key-datastores")
    assert put_job(sandbox_env, "key-ds-1", rest_body(sandbox_env, code.id)).status_code == 201
    assert status(wait_terminal(ml, "key-ds-1")) == "Failed"
    assert run_details(sandbox_env, "key-ds-1")["error"]["error"]["code"] == STREAM_AUTH
    with pytest.raises(JobException) as caught:
        ml.jobs.stream("key-ds-1")
    assert STREAM_AUTH in caught.value.message


def test_listing_the_children_of_a_command_job_returns_none(sandbox_env: Sandbox, ml: Any) -> None:
    name = submit(ml, "echo hi")
    assert list(ml.jobs.list(parent_job_name=name)) == []


def test_download_refuses_a_job_that_is_not_terminal_like_the_sdk_says(sandbox_env: Sandbox, ml: Any) -> None:
    from azure.ai.ml.exceptions import JobException

    sandbox_env.control.set_aml_job_timing(queued=30)
    name = submit(ml, "echo hi")
    with pytest.raises(JobException, match="Download is allowed only in states"):
        ml.jobs.download(name)
    ml.jobs.begin_cancel(name).result()


def _arm_get(sb: Sandbox, path: str) -> Any:
    token = ManagedIdentityCredential().get_token(f"{sb.arm_endpoint}/.default").token
    response = requests.get(f"{sb.arm_endpoint}{path}", headers={"Authorization": f"Bearer {token}"},
                            verify=str(sb.ca_bundle), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _keys(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield str(key)
            yield from _keys(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from _keys(item)


def test_no_job_document_any_route_returns_holds_a_sandbox_key(sandbox_env: Sandbox, ml: Any) -> None:
    sb = sandbox_env
    code = register(ml, "train", "training-code")
    put = put_job(sb, "scan-failed", rest_body(sb, code.id, command="exit 3", inputs={}))
    assert put.status_code == 201
    ok = submit(ml, "echo fine")
    for job in ("scan-failed", ok):
        wait_terminal(ml, job)
    ws = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
          f"Microsoft.MachineLearningServices/workspaces/{sb.layout.workspace}")
    documents = [put.json(), _arm_get(sb, f"{ws}/jobs?api-version=2025-09-01")]
    documents += [_arm_get(sb, f"{ws}/jobs/{job}?api-version=2025-09-01") for job in ("scan-failed", ok)]
    documents += [run_details(sb, job) for job in ("scan-failed", ok)]
    assert len(documents[1]["value"]) == 2
    found = [key for doc in documents for key in _keys(doc) if key.lower().startswith("sandbox")]
    assert found == [], json.dumps(documents)[:2000]
    # The failure is in run history, not in the resource: the resource says Failed, run history says why.
    assert documents[2]["properties"]["status"] == "Failed"
    assert run_details(sb, "scan-failed")["error"]["error"]["code"] == "UserError"


def test_a_job_walks_the_services_lifecycle_states_in_order(sandbox_env: Sandbox, ml: Any) -> None:
    name = submit(ml, "echo hi")
    assert status(wait_terminal(ml, name)) == "Completed"
    seen = [step["status"] for step in sandbox_env.control.aml_job(name)["history"]]
    assert seen == ["NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed"]


def test_cancel_passes_through_cancel_requested_before_canceled(sandbox_env: Sandbox, ml: Any) -> None:
    sandbox_env.control.set_aml_job_timing(cancel=2.0)
    name = submit(ml, "sleep 120")
    end = time.monotonic() + 30
    while status(ml.jobs.get(name)) != "Running":
        assert time.monotonic() < end
        time.sleep(0.05)
    poller = ml.jobs.begin_cancel(name)
    assert status(ml.jobs.get(name)) == "CancelRequested"  # the cancel is asynchronous
    poller.result()
    assert status(wait_terminal(ml, name)) == "Canceled"
    seen = [step["status"] for step in sandbox_env.control.aml_job(name)["history"]]
    assert seen[-2:] == ["CancelRequested", "Canceled"]


def test_the_timing_switch_has_a_realistic_profile_and_reset_restores_the_fast_one(sandbox_env: Sandbox) -> None:
    control = sandbox_env.control
    realistic = control.set_aml_job_timing("realistic")
    assert realistic["queued"] + realistic["preparing"] >= 60  # minutes before a job runs, not milliseconds
    assert control.set_aml_job_timing(finalizing=1.5)["finalizing"] == 1.5
    control.reset()
    assert control.aml_job_timing()["queued"] < 1


def test_the_run_history_refuses_a_caller_without_a_token(sandbox_env: Sandbox) -> None:
    sb = sandbox_env
    path = (f"/history/v1.0/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{sb.layout.workspace}/runs/{uuid.uuid4().hex}/details")
    response = requests.get(f"{sb.arm_endpoint}{path}", verify=str(sb.ca_bundle), timeout=30)
    assert response.status_code == 401


def test_the_workspace_has_its_two_system_datastores_and_the_blob_store_is_the_default(
    sandbox_env: Sandbox, ml: Any
) -> None:
    # ``DatastoreOperations.get_default`` lists with isDefault=true; jobs.download reads logs from the artifact store.
    assert ml.datastores.get_default().name == "workspaceblobstore"
    assert ml.datastores.get("workspaceartifactstore").container_name == "azureml"
    assert sorted(d.name for d in ml.datastores.list()) == ["workspaceartifactstore", "workspaceblobstore"]


def test_download_fetches_the_named_output_and_the_log_through_the_storage_host_names(
    sandbox_env: Sandbox, ml: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.ai.ml import Output, command

    # The SDK opens https://{account}.blob.{storage suffix} itself (get_datastore_info): the sandbox's proxy is its DNS.
    monkeypatch.setenv("HTTPS_PROXY", sandbox_env.storage_proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # not "localhost": requests matches it as a suffix of the names
    code = register(ml, "train", "training-code")
    job = ml.jobs.create_or_update(command(
        code=code.id, command="python train.py --epochs 2 --model-dir ${{outputs.model}}",
        outputs={"model": Output(type="custom_model")}, environment=CURATED, compute="aks-gpu", instance_type="gpu-t4"))
    assert status(wait_terminal(ml, job.name)) == "Completed"
    ml.jobs.download(job.name, download_path=tmp_path, output_name="model")
    ml.jobs.download(job.name, download_path=tmp_path)  # the default: the logs, from the artifact store
    # Where the SDK puts them: named-outputs/{name}/ and artifacts/ (_job_operations.py, download).
    model = tmp_path / "named-outputs" / "model"
    assert json.loads((model / "metrics.json").read_text())["epochs"] == 2
    assert json.loads((model / "code.json").read_text())["codeId"] == code.id
    logs = list((tmp_path / "artifacts").rglob("std_log.txt"))
    assert len(logs) == 1 and logs[0].read_text().strip() != ""


def test_the_storage_proxy_tunnels_only_the_sandboxs_own_storage_names(sandbox_env: Sandbox) -> None:
    import socket
    from urllib.parse import urlsplit

    proxy = urlsplit(sandbox_env.storage_proxy)
    known = f"{sandbox_env.layout.workspace_storage_account}.blob.core.sandbox.localhost:443"

    def connect(target: str) -> str:
        with socket.create_connection((proxy.hostname, proxy.port), timeout=10) as sock:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            return sock.recv(200).decode("latin-1").split("\r\n", 1)[0]

    assert connect(known).startswith("HTTP/1.1 200")
    assert connect("example.com:443").startswith("HTTP/1.1 403")  # not an open proxy
    assert connect("nosuchaccount1.blob.core.sandbox.localhost:443").startswith("HTTP/1.1 403")
