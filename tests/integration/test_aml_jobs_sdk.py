"""Azure ML command jobs with the real azure-ai-ml against the sandbox: validated like the service, run for real.

Run by scripts/test-sdk-matrix.sh on the newest and the oldest azure-ai-ml the project supports.
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
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from cicd_tools.codeassets.sdk import SdkCode, build_ml_client, create_code
from cicd_tools.codeassets.workspace import WorkspaceRef
from cicd_tools.sandbox.ml.workspace import _datastore_container
from cicd_tools.sandbox.runtime import Sandbox

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "aml" / "jobs"
CURATED = "azureml://registries/azureml/environments/sklearn-1.5/versions/1"
JOB_API = "2025-09-01"


@pytest.fixture
def ml(sandbox_env: Sandbox) -> Iterator[Any]:
    ws = WorkspaceRef(sandbox_env.subscription_id, sandbox_env.resource_group, sandbox_env.layout.workspace,
                      sandbox_env.arm_endpoint)
    yield build_ml_client(ManagedIdentityCredential(), ws)


def status(job: Any) -> str:
    """The job's status as the service spells it (the SDK hands a str enum)."""
    return str(getattr(job.status, "value", job.status))


def wait_terminal(ml: Any, name: str, deadline: float = 60.0) -> Any:
    """Poll the job until the SDK sees a terminal status (or fail the test at the deadline)."""
    end = time.monotonic() + deadline
    while True:
        job = ml.jobs.get(name)
        if status(job) in ("Completed", "Failed", "Canceled", "NotResponding"):
            return job
        assert time.monotonic() < end, f"job {name} still {job.status} after {deadline} s"
        time.sleep(0.1)


def register(ml: Any, folder: str, name: str) -> SdkCode:
    return create_code(ml, name, "1", REPO / "aml" / "src" / folder)


def read_output(sb: Sandbox, job: str, output: str, file: str) -> dict[str, Any]:
    """A file of a job's output, read from the workspace datastore as CI would (its token, its data role)."""
    service = BlobServiceClient(sb.blob_endpoint_of(sb.layout.workspace_storage_account),
                                credential=ManagedIdentityCredential())
    container = _datastore_container(sb, sb.layout.workspace)
    raw = service.get_blob_client(container, f"azureml/{job}/{output}/{file}").download_blob().readall()
    return dict(json.loads(raw))


def test_sdk_command_job_reaches_completed_and_its_output_names_the_registered_code(
    sandbox_env: Sandbox, ml: Any
) -> None:
    from azure.ai.ml import Output, command

    code = register(ml, "train", "training-code")
    job = command(code=code.id, command="python train.py --epochs ${{inputs.epochs}} --model-dir ${{outputs.model}}",
                  inputs={"epochs": 3}, outputs={"model": Output(type="custom_model")}, environment=CURATED,
                  compute="aks-gpu", instance_type="gpu-t4")
    created = ml.jobs.create_or_update(job)
    done = wait_terminal(ml, created.name)
    assert status(done) == "Completed"
    evidence = read_output(sandbox_env, created.name, "model", "code.json")
    # The hash the job computed over the code it was given equals the one the service registered.
    assert evidence["codeHash"] == code.hash_sha256
    assert evidence["codeId"] == code.id
    assert read_output(sandbox_env, created.name, "model", "metrics.json")["epochs"] == 3
    assert [j.name for j in ml.jobs.list()] == [created.name]


def test_sdk_reads_the_kubernetes_compute_and_its_instance_types(sandbox_env: Sandbox, ml: Any) -> None:
    compute = ml.compute.get("aks-gpu")
    assert type(compute).__name__ == "KubernetesCompute"
    props = compute.properties  # 1.24 hands the REST properties in snake_case, 1.35 as sent
    assert props.get("defaultInstanceType", props.get("default_instance_type")) == "defaultinstancetype"
    limits = props.get("instanceTypes", props.get("instance_types"))["gpu-a100"]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert [c.name for c in ml.compute.list()] == ["aks-gpu"]


def test_shipped_yaml_jobs_train_then_validate_on_the_checkpoint_train_wrote(sandbox_env: Sandbox, ml: Any) -> None:
    from azure.ai.ml import load_job

    train_code = register(ml, "train", "training-code")
    validate_code = register(ml, "validate", "validation-code")
    train_name, validate_name = f"train-{uuid.uuid4().hex[:8]}", f"validate-{uuid.uuid4().hex[:8]}"
    train = load_job(JOBS / "train.yml", params_override=[{"code": f"azureml:{train_code.id}"}, {"name": train_name}])
    assert status(wait_terminal(ml, ml.jobs.create_or_update(train).name)) == "Completed"
    validate = load_job(JOBS / "validate.yml", params_override=[
        {"code": f"azureml:{validate_code.id}"}, {"name": validate_name},
        {"inputs.model.path": f"azureml://jobs/{train_name}/outputs/model"}])
    assert status(wait_terminal(ml, ml.jobs.create_or_update(validate).name)) == "Completed"
    trained = read_output(sandbox_env, train_name, "model", "code.json")
    metrics = read_output(sandbox_env, validate_name, "metrics", "metrics.json")
    assert metrics["passed"] is True
    assert metrics["trainedByCodeHash"] == trained["codeHash"] == train_code.hash_sha256


def test_a_failing_command_ends_failed_with_its_log_tail(sandbox_env: Sandbox, ml: Any) -> None:
    from azure.ai.ml import command

    code = register(ml, "train", "training-code")
    created = ml.jobs.create_or_update(command(
        code=code.id, command="python train.py --epochs 0", environment=CURATED, compute="aks-gpu",
        instance_type="gpu-t4"))
    done = wait_terminal(ml, created.name)
    assert status(done) == "Failed"
    assert "--epochs must be at least 1" in run_details(sandbox_env, created.name)["error"]["error"]["message"]
    seen = sandbox_env.control.aml_job(created.name)  # the whole log, through the control endpoint
    assert seen["status"] == "Failed" and any("--epochs must be at least 1" in line for line in seen["log"])


def test_the_service_refuses_an_empty_string_input_the_client_let_through(sandbox_env: Sandbox, ml: Any) -> None:
    from azure.ai.ml import command

    code = register(ml, "train", "training-code")
    job = command(code=code.id, command="python train.py --epochs ${{inputs.epochs}}", inputs={"epochs": ""},
                  environment=CURATED, compute="aks-gpu", instance_type="gpu-t4")
    with pytest.raises(HttpResponseError) as caught:
        ml.jobs.create_or_update(job)
    assert "The Value field is required" in str(caught.value)


def test_cancel_kills_the_running_command_and_the_job_ends_canceled(sandbox_env: Sandbox, ml: Any) -> None:
    from azure.ai.ml import command

    code = register(ml, "train", "training-code")
    created = ml.jobs.create_or_update(command(
        code=code.id, command="python -c 'import time; time.sleep(120)'", environment=CURATED,
        compute="aks-gpu", instance_type="gpu-t4"))
    end = time.monotonic() + 30
    while status(ml.jobs.get(created.name)) != "Running":
        assert time.monotonic() < end
        time.sleep(0.05)
    ml.jobs.begin_cancel(created.name).result()
    assert status(wait_terminal(ml, created.name)) == "Canceled"


# -- the REST body, as ADF's WebActivity sends it -------------------------------------------------------
def put_job(sb: Sandbox, name: str, properties: dict[str, Any]) -> requests.Response:
    token = ManagedIdentityCredential().get_token(f"{sb.arm_endpoint}/.default").token
    ws = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
          f"Microsoft.MachineLearningServices/workspaces/{sb.layout.workspace}")
    return requests.put(f"{sb.arm_endpoint}{ws}/jobs/{name}?api-version={JOB_API}", json={"properties": properties},
                        headers={"Authorization": f"Bearer {token}"}, verify=str(sb.ca_bundle), timeout=30)


def run_details(sb: Sandbox, name: str) -> dict[str, Any]:
    """Run history's ``RunDetails`` of a job, where Azure ML puts a failed job's ``error`` (``{"error": {"code",
    "message"}}``), asked as azure-ai-ml's run-history client asks it (a token for https://ml.azure.com)."""
    token = ManagedIdentityCredential().get_token("https://ml.azure.com/.default").token
    path = (f"/history/v1.0/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{sb.layout.workspace}/runs/{name}/details")
    response = requests.get(f"{sb.arm_endpoint}{path}", headers={"Authorization": f"Bearer {token}"},
                            verify=str(sb.ca_bundle), timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def rest_body(sb: Sandbox, code_id: str, **changes: Any) -> dict[str, Any]:
    ws = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
          f"Microsoft.MachineLearningServices/workspaces/{sb.layout.workspace}")
    body: dict[str, Any] = {"jobType": "Command", "command": "python train.py --epochs ${{inputs.epochs}}",
                            "codeId": code_id, "environmentId": f"{ws}/environments/pytorch-gpu/versions/1",
                            "computeId": f"{ws}/computes/aks-gpu", "inputs": {"epochs": {
                                "jobInputType": "literal", "value": "2"}},
                            "resources": {"instanceCount": 1, "instanceType": "gpu-a100"}}
    body.update(changes)
    return body


@pytest.mark.parametrize(("changes", "message"), [
    ({"inputs": {"epochs": {"jobInputType": "string", "value": "2"}}},
     "The value 'string' of input type is not valid for Command job"),
    ({"inputs": {"epochs": {"jobInputType": "literal", "value": ""}}}, "Empty string is not allowed for input value"),
    ({"inputs": {"epochs": {"jobInputType": "literal"}}}, "The Value field is required"),
    ({"codeId": "azureml:training-code:1"}, "Invalid codeId 'azureml:training-code:1'"),
    ({"resources": {"instanceType": "gpu-h100"}}, "Instance type 'gpu-h100' is not found in compute 'aks-gpu'"),
    ({"environmentId": "azureml:pytorch-gpu:1"}, "Could not find asset with ID: azureml:pytorch-gpu:1"),
])
def test_the_rest_put_refuses_what_the_service_refuses_with_its_message(
    sandbox_env: Sandbox, ml: Any, changes: dict[str, Any], message: str
) -> None:
    code = register(ml, "train", "training-code")
    response = put_job(sandbox_env, f"bad-{uuid.uuid4().hex[:8]}", rest_body(sandbox_env, code.id, **changes))
    assert response.status_code in (400, 404)
    assert response.json()["error"]["code"] == "UserError"
    assert message in response.json()["error"]["message"]


def test_shared_key_off_and_no_data_role_fails_with_stream_access_authentication(
    sandbox_env: Sandbox, ml: Any
) -> None:
    code = register(ml, "train", "training-code")
    sb = sandbox_env
    sb.control.set_account_properties(sb.layout.workspace_storage_account, allow_shared_key_access=False)
    assert put_job(sb, "denied-1", rest_body(sb, code.id)).status_code == 201
    denied = wait_terminal(ml, "denied-1")
    assert status(denied) == "Failed"
    assert run_details(sb, "denied-1")["error"]["error"]["code"] == "ScriptExecution.StreamAccess.Authentication"
    # The documented fix: a data role for the compute identity on the workspace storage.
    sb.control.assign_role(sb.layout.compute_principal, "Storage Blob Data Contributor",
                           sb.layout.account_id(sb.layout.workspace_storage_account))
    assert put_job(sb, "allowed-1", rest_body(sb, code.id)).status_code == 201
    assert status(wait_terminal(ml, "allowed-1")) == "Completed"


def test_a_command_over_its_timeout_fails_and_an_mlflow_input_without_mlmodel_fails_at_run_time(
    sandbox_env: Sandbox, ml: Any
) -> None:
    sb = sandbox_env
    code = register(ml, "train", "training-code")
    slow = rest_body(sb, code.id, command="python -c 'import time; time.sleep(60)'", inputs={},
                     limits={"jobLimitsType": "Command", "timeout": "PT1S"})
    assert put_job(sb, "slow-1", slow).status_code == 201
    train = rest_body(sb, code.id, command="python train.py --model-dir ${{outputs.model}}", inputs={},
                      outputs={"model": {"jobOutputType": "custom_model", "mode": "ReadWriteMount"}})
    assert put_job(sb, "train-ckpt", train).status_code == 201
    assert status(wait_terminal(ml, "train-ckpt")) == "Completed"
    # The checkpoint is plain JSON, not an MLflow model: declaring it mlflow_model fails when it is materialised.
    as_mlflow = rest_body(sb, code.id, command="ls ${{inputs.model}}", inputs={"model": {
        "jobInputType": "mlflow_model", "uri": "azureml://jobs/train-ckpt/outputs/model", "mode": "ReadOnlyMount"}})
    assert put_job(sb, "mlflow-1", as_mlflow).status_code == 201
    failed = wait_terminal(ml, "mlflow-1")
    assert status(failed) == "Failed"
    assert "holds no MLmodel file" in run_details(sb, "mlflow-1")["error"]["error"]["message"]
    timed_out = wait_terminal(ml, "slow-1")
    assert status(timed_out) == "Failed" and run_details(sb, "slow-1")["error"]["error"]["code"] == "JobTimeout"


def test_more_instances_than_the_pool_has_nodes_stays_queued_until_canceled(sandbox_env: Sandbox, ml: Any) -> None:
    code = register(ml, "train", "training-code")
    body = rest_body(sandbox_env, code.id, resources={"instanceCount": 4, "instanceType": "gpu-a100"})
    assert put_job(sandbox_env, "too-big", body).status_code == 201
    end = time.monotonic() + 30
    while not sandbox_env.control.aml_job("too-big")["log"]:
        assert time.monotonic() < end
        time.sleep(0.05)
    assert status(ml.jobs.get("too-big")) == "Queued"
    assert "pool has 1 node(s)" in sandbox_env.control.aml_job("too-big")["log"][0]
    ml.jobs.begin_cancel("too-big").result()
    assert status(wait_terminal(ml, "too-big")) == "Canceled"


def test_a_job_runs_in_the_sandbox_state_folder_without_the_sandbox_secret(sandbox_env: Sandbox, ml: Any) -> None:
    from azure.ai.ml import command

    code = register(ml, "train", "training-code")
    created = ml.jobs.create_or_update(command(
        code=code.id, command='pwd; echo "secret=${CICD_SANDBOX_SECRET:-unset}"', environment=CURATED,
        compute="aks-gpu", instance_type="gpu-t4"))
    assert status(wait_terminal(ml, created.name)) == "Completed"
    log = sandbox_env.control.aml_job(created.name)["log"]
    jobs_root = sandbox_env.root.resolve() / "aml-jobs"
    assert any(Path(line).is_relative_to(jobs_root) for line in log if line.startswith("/")), log
    assert "secret=unset" in log and sandbox_env.secret not in "\n".join(log)
