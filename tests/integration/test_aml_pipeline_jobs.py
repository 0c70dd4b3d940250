"""The shipped factory's job submissions, evaluated by the ADF expression engine and sent to the sandbox service.

The Data Factory run itself is another test's business; this one proves the bodies `pl_train_and_validate` and
`pl_run_aml_job` send are accepted by the (emulated) service, run, and that validation consumes the checkpoint the
training job wrote, then that `aml verify` accepts both jobs.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from cicd_tools.adf.expressions import evaluate_json
from cicd_tools.adf.expressions.types import EvalContext
from cicd_tools.cli import main
from cicd_tools.codeassets.sdk import build_ml_client, create_code
from cicd_tools.codeassets.workspace import WorkspaceRef
from cicd_tools.sandbox.aml import _datastore_container
from cicd_tools.sandbox.runtime import Sandbox

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / "adf" / "pipeline"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((PIPELINES / f"{name}.json").read_text()))


def child_parameters(outer: dict[str, Any], activity: str, ctx: EvalContext) -> dict[str, Any]:
    """What an ExecutePipeline activity hands pl_run_aml_job (declared defaults, then the evaluated values)."""
    inner = load("pl_run_aml_job")["properties"]["parameters"]
    params = {k: v.get("defaultValue") for k, v in inner.items()}
    act = next(a for a in outer["properties"]["activities"] if a["name"] == activity)
    params.update(evaluate_json(copy.deepcopy(act["typeProperties"]["parameters"]), ctx))
    return params


def submit(sb: Sandbox, params: dict[str, Any], pointer: dict[str, str], run_id: str) -> str:
    """Evaluate SubmitJob's url and body as ADF would and send them with the factory's ARM token."""
    submit_job = next(a for a in load("pl_run_aml_job")["properties"]["activities"] if a["name"] == "SubmitJob")
    ctx = EvalContext(
        parameters=params,
        global_parameters={"armEndpoint": sb.arm_endpoint, "subscriptionId": sb.subscription_id,
                           "resourceGroup": sb.resource_group, "workspaceName": sb.layout.workspace,
                           "computeName": sb.layout.compute, "environmentId": "azureml:pytorch-gpu:1"},
        activity_outputs={"ReadPointer": pointer}, system={"RunId": run_id})
    url = evaluate_json(submit_job["typeProperties"]["url"], ctx)
    body = evaluate_json(copy.deepcopy(submit_job["typeProperties"]["body"]), ctx)
    token = ManagedIdentityCredential().get_token(f"{sb.arm_endpoint}/.default").token
    headers = {"Authorization": f"Bearer {token}"}
    response = requests.put(url, data=json.dumps(body), headers={**headers, "Content-Type": "application/json"},
                            verify=str(sb.ca_bundle), timeout=30)
    assert response.status_code == 201, response.text
    end = time.monotonic() + 60
    while (status := requests.get(url, headers=headers, verify=str(sb.ca_bundle), timeout=30)
           .json()["properties"]["status"]) not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < end
        time.sleep(0.1)
    assert status == "Completed", requests.get(url, headers=headers, verify=str(sb.ca_bundle), timeout=30).text
    return str(params["jobName"])


def test_the_factory_job_bodies_run_train_then_validate_on_its_checkpoint_and_verify_passes(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = sandbox_env
    ws = WorkspaceRef(sb.subscription_id, sb.resource_group, sb.layout.workspace, sb.arm_endpoint)
    ml = build_ml_client(ManagedIdentityCredential(), ws)
    codes = {name: create_code(ml, name, "1", REPO / "aml" / "src" / folder)
             for name, folder in (("training-code", "train"), ("validation-code", "validate"))}
    outer, run_id = load("pl_train_and_validate"), str(uuid.uuid4())
    ctx = EvalContext(parameters={"runTag": "nightly"}, system={"RunId": run_id})
    names = []
    for activity in ("Train", "Validate"):
        params = child_parameters(outer, activity, ctx)
        code = codes[params["assetName"]]
        names.append(submit(sb, params, {"assetId": code.id, "version": code.version}, str(uuid.uuid4())))
    assert names == [f"train-nightly-{run_id}", f"validate-nightly-{run_id}"]

    service = BlobServiceClient(sb.blob_endpoint_of(sb.layout.workspace_storage_account),
                                credential=ManagedIdentityCredential())
    container = _datastore_container(sb, sb.layout.workspace)
    metrics = json.loads(service.get_blob_client(container, f"azureml/{names[1]}/metrics/metrics.json")
                         .download_blob().readall())
    assert metrics["passed"] is True
    assert metrics["trainedByCodeHash"] == codes["training-code"].hash_sha256  # it read train's checkpoint

    assert main(["--output", "json", "aml", "verify", "--job", names[0], "--expect-code-id",
                 codes["training-code"].id]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["jobs"][0]["hashMatches"] is True
