"""`model mirror` against the sandbox with the real azure-ai-ml: lineage tags, idempotent replays, best effort."""

from __future__ import annotations

import copy
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import ContainerClient

from cicd_tools.cli.main import main
from cicd_tools.codeassets.sdk import build_ml_client
from cicd_tools.codeassets.workspace import WorkspaceRef
from cicd_tools.sandbox.ml.workspace import _datastore_container
from cicd_tools.sandbox.runtime import Sandbox

REPO = Path(__file__).resolve().parents[2]
MODEL = "mirror-model"
WORKSPACE_API = "2025-09-01"


# -- helpers (like the AML job tests', kept here so the two test files evolve independently) ------------
def arm(sb: Sandbox, method: str, path: str, body: Any = None) -> requests.Response:
    """A workspace-relative ARM call with the CI identity's token."""
    token = ManagedIdentityCredential().get_token(f"{sb.arm_endpoint}/.default").token
    ws = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
          f"Microsoft.MachineLearningServices/workspaces/{sb.layout.workspace}")
    return requests.request(method, f"{sb.arm_endpoint}{ws}{path}?api-version={WORKSPACE_API}", json=body,
                            headers={"Authorization": f"Bearer {token}"}, verify=str(sb.ca_bundle), timeout=30)


def wait_status(sb: Sandbox, name: str, deadline: float = 90.0) -> str:
    end = time.monotonic() + deadline
    while True:
        state = str(arm(sb, "GET", f"/jobs/{name}").json()["properties"]["status"])
        if state in ("Completed", "Failed", "Canceled"):
            return state
        assert time.monotonic() < end, f"job {name} still {state}"
        time.sleep(0.2)


def run_training_job(sb: Sandbox, code_id: str) -> str:
    """PUT a training job as ADF's SubmitJob does and wait for it to complete; its name."""
    ws = code_id.split("/codes/")[0]
    name = f"train-{uuid.uuid4().hex[:8]}"
    response = arm(sb, "PUT", f"/jobs/{name}", {"properties": {
        "jobType": "Command", "command": "python train.py --epochs 2 --model-dir ${{outputs.model}}",
        "codeId": code_id, "environmentId": f"{ws}/environments/pytorch-gpu/versions/1",
        "computeId": f"{ws}/computes/aks-gpu", "resources": {"instanceCount": 1, "instanceType": "gpu-a100"},
        "outputs": {"model": {"jobOutputType": "custom_model", "mode": "ReadWriteMount"}}}})
    assert response.status_code == 201, response.text
    assert wait_status(sb, name) == "Completed"
    return name


def load(pipeline: str) -> dict[str, Any]:
    return dict(json.loads((REPO / "adf" / "pipeline" / f"{pipeline}.json").read_text()))


def child_parameters(outer: dict[str, Any], activity: str, ctx: Any) -> dict[str, Any]:
    """What an ExecutePipeline activity hands pl_run_aml_job: its declared defaults, then the evaluated values."""
    from cicd_tools.adf.expressions import evaluate_json

    params = {k: v.get("defaultValue") for k, v in load("pl_run_aml_job")["properties"]["parameters"].items()}
    act = next(a for a in outer["properties"]["activities"] if a["name"] == activity)
    params.update(evaluate_json(copy.deepcopy(act["typeProperties"]["parameters"]), ctx))
    return params


def submit(sb: Sandbox, params: dict[str, Any], pointer: dict[str, str]) -> str:
    """pl_run_aml_job's SubmitJob url and body evaluated as ADF would, sent with a token; waits for Completed."""
    from cicd_tools.adf.expressions import evaluate_json
    from cicd_tools.adf.expressions.types import EvalContext

    submit_job = next(a for a in load("pl_run_aml_job")["properties"]["activities"] if a["name"] == "SubmitJob")
    ctx = EvalContext(
        parameters=params,
        global_parameters={"armEndpoint": sb.arm_endpoint, "subscriptionId": sb.subscription_id,
                           "resourceGroup": sb.resource_group, "workspaceName": sb.layout.workspace,
                           "computeName": sb.layout.compute, "environmentId": "azureml:pytorch-gpu:1"},
        activity_outputs={"ReadPointer": pointer}, system={"RunId": str(uuid.uuid4())})
    body = evaluate_json(copy.deepcopy(submit_job["typeProperties"]["body"]), ctx)
    name = str(params["jobName"])
    response = arm(sb, "PUT", f"/jobs/{name}", body)
    assert response.status_code == 201, response.text
    state = wait_status(sb, name)
    assert state == "Completed", arm(sb, "GET", f"/jobs/{name}").text
    return name


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["--output", "json", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def ml_client(sb: Sandbox) -> Any:
    ws = WorkspaceRef(sb.subscription_id, sb.resource_group, sb.layout.workspace, sb.arm_endpoint)
    return build_ml_client(ManagedIdentityCredential(), ws)


def datastore(sb: Sandbox) -> ContainerClient:
    container = _datastore_container(sb, sb.layout.workspace)
    url = f"{sb.blob_endpoint_of(sb.layout.workspace_storage_account)}/{container}"
    return ContainerClient.from_container_url(url, credential=ManagedIdentityCredential())


def sdk_content_hash(folder: Path) -> str:
    """The hash azure-ai-ml itself computes for a folder (the expected value comes from the SDK)."""
    from azure.ai.ml._utils._asset_utils import get_content_hash, get_ignore_file

    return str(get_content_hash(str(folder), get_ignore_file(str(folder))))


def writes(sb: Sandbox) -> list[dict[str, Any]]:
    """Blob uploads and ARM writes in the request log since it was last cleared."""
    return [r for r in sb.control.requests() if r["method"] in ("PUT", "POST") and r["service"] in ("blob", "arm")]


def checkpoint_folder(root: Path, weights: bytes = b"weights-10") -> Path:
    for step in (1, 9, 10):
        folder = root / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(weights if step == 10 else f"weights-{step}".encode())
        (folder / "config.json").write_text(json.dumps({"step": step}))
        for state in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            (folder / state).write_bytes(b"training state " * 100)
    (root / "runs").mkdir()
    (root / "runs" / "events.out.tfevents.1700000000.host.1").write_bytes(b"tensorboard")
    return root


def test_mirror_of_a_training_job_registers_version_1_with_its_lineage_and_a_replay_uploads_nothing(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code_dir = tmp_path / "repo" / "src" / "train"
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    shutil.copytree(REPO / "aml" / "src" / "train", code_dir)
    monkeypatch.chdir(tmp_path / "repo")
    rc, code, _ = cli(capsys, "code", "register", "--name", "training-code", "--path", "src/train", "--version", "1")
    assert rc == 0, code
    job = run_training_job(sandbox_env, code["assetId"])
    job_doc = arm(sandbox_env, "GET", f"/jobs/{job}").json()
    assert job_doc["properties"]["status"] == "Completed"

    rc, first, err = cli(capsys, "model", "mirror", "--job", job, "--name", MODEL)
    assert rc == 0, err
    assert (first["ok"], first["modelName"], first["modelVersion"], first["reused"]) == (True, MODEL, "1", False)
    model = ml_client(sandbox_env).models.get(MODEL, "1")
    assert first["modelAssetId"] == model.id
    assert model.type == "custom_model"
    assert model.tags["cicd.sourceRunId"] == model.tags["cicd.trainingJob"] == job
    assert model.tags["cicd.codeId"] == job_doc["properties"]["codeId"]
    assert (model.tags["cicd.codeAsset"], model.tags["cicd.codeVersion"]) == ("training-code", "1")
    # The hash is the SDK's own over the job's output as it sits on the datastore.
    output = tmp_path / "output"
    with datastore(sandbox_env) as box:
        prefix = f"azureml/{job}/model/"
        for blob in box.list_blobs(name_starts_with=prefix):
            (output / blob.name[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
            (output / blob.name[len(prefix):]).write_bytes(box.download_blob(blob.name).readall())
    assert sorted(first["files"]) == sorted(p.name for p in output.iterdir())
    assert model.tags["cicd.contentHash"] == first["contentHash"] == sdk_content_hash(output)

    sandbox_env.control.clear_requests()
    rc, again, err = cli(capsys, "model", "mirror", "--job", job, "--name", MODEL)
    assert rc == 0, err
    assert (again["modelVersion"], again["reused"], again["modelAssetId"]) == ("1", True, model.id)
    assert writes(sandbox_env) == []  # no blob upload, no model PUT

    rc, replay, err = cli(capsys, "model", "mirror", "--from-path", str(output), "--run-id", job, "--name", MODEL)
    assert rc == 0, err
    assert (replay["modelVersion"], replay["reused"]) == ("1", True)
    assert [m.version for m in ml_client(sandbox_env).models.list(MODEL)] == ["1"]


def test_a_checkpoint_folder_is_registered_without_training_state_and_with_its_tensorboard_events(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = checkpoint_folder(tmp_path / "run")
    rc, doc, err = cli(capsys, "model", "mirror", "--from-path", str(run), "--run-id", "osmo-run-42", "--name", MODEL,
                       "--tag", "team=vision", "--tag", "note=a=b")
    assert rc == 0, err
    expected = ["config.json", "model.safetensors", "tensorboard/runs/events.out.tfevents.1700000000.host.1"]
    assert sorted(doc["files"]) == expected
    assert sorted(doc["skipped"]) == ["checkpoint-10/optimizer.pt", "checkpoint-10/rng_state.pth",
                                      "checkpoint-10/scheduler.pt"]
    model = ml_client(sandbox_env).models.get(MODEL, doc["modelVersion"])
    assert model.tags["cicd.checkpoint"] == "checkpoint-10"
    assert (model.tags["team"], model.tags["note"]) == ("vision", "a=b")
    path = model.path.split("/paths/", 1)[1]
    with datastore(sandbox_env) as box:
        stored = {b.name[len(path):]: box.download_blob(b.name).readall()
                  for b in box.list_blobs(name_starts_with=path)}
    assert sorted(stored) == expected
    assert stored["model.safetensors"] == b"weights-10"
    assert main(["model", "mirror", "--from-path", str(run), "--run-id", "osmo-run-42", "--name", MODEL]) == 0
    text = capsys.readouterr().out
    assert f"osmo-run-42: already registered as {MODEL}:{doc['modelVersion']}" in text
    assert "left out:     checkpoint-10/optimizer.pt" in text

    # Other content under the same run id is refused (exit 5) unless --new-version.
    other = checkpoint_folder(tmp_path / "other", weights=b"weights-10-retrained")
    rc, refused, err = cli(capsys, "model", "mirror", "--from-path", str(other), "--run-id", "osmo-run-42",
                           "--name", MODEL)
    assert rc == 5 and refused["code"] == "RunMirroredWithOtherContent"
    assert f"{MODEL}:{doc['modelVersion']}" in err and "--new-version" in err
    rc, second, err = cli(capsys, "model", "mirror", "--from-path", str(other), "--run-id", "osmo-run-42",
                          "--name", MODEL, "--new-version")
    assert rc == 0, err
    assert (second["modelVersion"], second["reused"]) == (str(int(doc["modelVersion"]) + 1), False)


def test_a_failing_registry_is_a_warning_with_its_cause_under_best_effort_and_exit_3_without(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = checkpoint_folder(tmp_path / "run")
    sandbox_env.control.add_fault(service="arm", path=r".*/models/.*", status=403, code="AuthorizationFailed",
                                  message="The client does not have authorization to perform action "
                                          "'Microsoft.MachineLearningServices/workspaces/models/versions/read'.",
                                  count=None)
    argv = ("model", "mirror", "--from-path", str(run), "--run-id", "r-1", "--name", MODEL)
    rc, doc, err = cli(capsys, *argv, "--best-effort")
    assert rc == 0, err
    assert doc["ok"] is False and doc["modelVersion"] is None
    assert doc["error"]["code"] == "AuthorizationFailed"
    assert "models/versions/read" in doc["warning"] and "AzureML Data Scientist" in doc["warning"]
    assert "models/versions/read" in err
    rc, doc, err = cli(capsys, *argv)
    assert rc == 3 and doc["code"] == "AuthorizationFailed"

    # The registration itself refused after the upload: a warning; the replay registers the same content.
    sandbox_env.control.clear_faults()
    sandbox_env.control.add_fault(service="arm", path=r".*/models/[^/]+/versions/[^/?]+(\?.*)?$", method="PUT",
                                  status=400, code="UserError", message="Injected: the registry is read-only.",
                                  count=None)
    rc, doc, err = cli(capsys, *argv, "--best-effort")
    assert rc == 0 and doc["error"]["code"] == "UserError" and "read-only" in doc["warning"], err
    sandbox_env.control.clear_faults()
    rc, doc, err = cli(capsys, *argv)
    assert (rc, doc["modelVersion"], doc["reused"]) == (0, "1", False), err


def test_bad_input_is_a_usage_error_naming_the_fix(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, doc, err = cli(capsys, "model", "mirror", "--from-path", str(tmp_path / "nope"), "--run-id", "r",
                       "--name", MODEL)
    assert rc == 2 and doc["code"] == "CheckpointFolderMissing" and "does not exist" in err
    rc, doc, err = cli(capsys, "model", "mirror", "--job", "no-such-job", "--name", MODEL)
    assert rc == 2 and doc["code"] == "JobNotFound"
    rc, doc, err = cli(capsys, "model", "mirror", "--adf-run-id", "00000000-0000-0000-0000-000000000000",
                       "--name", MODEL)
    assert rc == 2 and doc["code"] == "PipelineRunNotFound", err
    run = checkpoint_folder(tmp_path / "run")
    rc, doc, err = cli(capsys, "model", "mirror", "--from-path", str(run), "--run-id", "r", "--name", MODEL,
                       "--workspace", "mlw-nope")
    assert rc == 2 and doc["code"] == "WorkspaceNotFound" and "--workspace/CICD_WORKSPACE" in err
    monkeypatch.setenv("CICD_ARM_ENDPOINT", "https://127.0.0.1:9")
    rc, doc, err = cli(capsys, "model", "mirror", "--from-path", str(run), "--run-id", "r", "--name", MODEL)
    assert rc == 3, err


def test_adf_run_mirrors_its_training_job_with_the_validation_metrics_and_refuses_a_failed_validation(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's jobs are real sandbox jobs; which jobs the factory run submitted is h11's discovery (stubbed:
    this branch's sandbox has no Data Factory), so the test covers what mirror does with them."""
    from azure.ai.ml import load_job

    from cicd_tools.aml import adf_jobs
    from cicd_tools.codeassets.sdk import create_code

    ml = ml_client(sandbox_env)
    train_code = create_code(ml, "training-code", "1", REPO / "aml" / "src" / "train")
    validate_code = create_code(ml, "validation-code", "1", REPO / "aml" / "src" / "validate")
    suffix = uuid.uuid4().hex[:8]
    train, good, bad = f"train-{suffix}", f"validate-{suffix}", f"validate-strict-{suffix}"
    jobs_dir = REPO / "aml" / "jobs"
    ml.jobs.create_or_update(load_job(jobs_dir / "train.yml", params_override=[
        {"code": f"azureml:{train_code.id}"}, {"name": train}, {"inputs.epochs": 3}]))
    wait_status(sandbox_env, train)
    for name, max_mse in ((good, 0.5), (bad, 1e-12)):
        ml.jobs.create_or_update(load_job(jobs_dir / "validate.yml", params_override=[
            {"code": f"azureml:{validate_code.id}"}, {"name": name}, {"inputs.max_mse": max_mse},
            {"inputs.model.path": f"azureml://jobs/{train}/outputs/model"}]))
    assert (wait_status(sandbox_env, good), wait_status(sandbox_env, bad)) == ("Completed", "Failed")
    with datastore(sandbox_env) as box:
        metrics = json.loads(box.download_blob(f"azureml/{good}/metrics/metrics.json").readall())

    submitted: list[str] = []
    monkeypatch.setattr(adf_jobs, "jobs_submitted_by_run", lambda client, rg, factory, run_id, **_: [
        adf_jobs.SubmittedJob(name, run_id, "pl_train_and_validate", "SubmitJob") for name in submitted])
    submitted[:] = [train, good]
    rc, doc, err = cli(capsys, "model", "mirror", "--adf-run-id", "run-1", "--name", MODEL)
    assert rc == 0, err
    assert (doc["modelVersion"], doc["sourceRunId"], doc["trainingJob"]) == ("1", train, train)
    assert doc["codeId"] == train_code.id
    tags = ml.models.get(MODEL, "1").tags
    assert (tags["cicd.validationJob"], tags["cicd.adfRunId"]) == (good, "run-1")
    assert float(tags["cicd.validation.validation_mse"]) == metrics["validation_mse"]
    assert tags["cicd.validation.passed"] == "true"
    # The same training job by name is the same run with the same content: the same version.
    rc, doc, err = cli(capsys, "model", "mirror", "--job", train, "--validation-job", good, "--name", MODEL)
    assert (rc, doc["modelVersion"], doc["reused"]) == (0, "1", True), err
    rc, doc, err = cli(capsys, "model", "mirror", "--job", train, "--validation-job", train, "--name", MODEL)
    assert rc == 2 and doc["code"] == "NotAValidationOfTheJob", err

    submitted[:] = [train, bad]
    rc, doc, err = cli(capsys, "model", "mirror", "--adf-run-id", "run-2", "--name", MODEL)
    assert rc == 4 and doc["code"] == "JobFailed" and bad in err
    rc, doc, err = cli(capsys, "model", "mirror", "--adf-run-id", "run-2", "--name", MODEL, "--result-file",
                       str(tmp_path / "mirror.json"))
    evidence = json.loads((tmp_path / "mirror.json").read_text())  # what was known before the refusal
    assert (rc, evidence["trainingJob"], evidence["codeId"]) == (4, train, train_code.id)
    rc, doc, err = cli(capsys, "model", "mirror", "--adf-run-id", "run-2", "--name", MODEL, "--best-effort")
    assert rc == 0 and doc["ok"] is False and doc["error"]["code"] == "JobFailed" and bad in doc["warning"]



def test_the_sandbox_registry_filters_by_tags_keeps_paths_immutable_and_has_no_model_pending_upload(
    sandbox_env: Sandbox,
) -> None:
    token = ManagedIdentityCredential().get_token(f"{sandbox_env.arm_endpoint}/.default").token
    base = (f"{sandbox_env.arm_endpoint}/subscriptions/{sandbox_env.subscription_id}/resourceGroups/"
            f"{sandbox_env.resource_group}/providers/Microsoft.MachineLearningServices/workspaces/"
            f"{sandbox_env.layout.workspace}/models/m")

    def call(method: str, path: str, body: Any = None, **query: str) -> requests.Response:
        return requests.request(method, f"{base}{path}", params={"api-version": "2025-09-01", **query}, json=body,
                                headers={"Authorization": f"Bearer {token}"}, verify=str(sandbox_env.ca_bundle),
                                timeout=30)

    assert call("GET", "/versions").json() == {"value": []}  # an unknown name lists empty (the SDK relies on it)
    assert call("GET", "").status_code == 404
    for version, run in (("1", "a"), ("2", "b")):
        body = {"properties": {"modelType": "custom_model", "modelUri": f"azureml://datastores/d/paths/{run}/",
                               "tags": {"run": run, "team": "x"}}}
        assert call("PUT", f"/versions/{version}", body).status_code == 201
    doc = call("GET", "/versions/1").json()
    assert doc["properties"]["flavors"] == {}  # azure-ai-ml reads flavors as a dict
    assert [v["name"] for v in call("GET", "/versions", tags="run=b").json()["value"]] == ["2"]
    assert [v["name"] for v in call("GET", "/versions", tags="team").json()["value"]] == ["2", "1"]
    assert call("GET", "/versions", tags="team=x,run=a").json()["value"][0]["name"] == "1"
    assert call("GET", "").json()["properties"]["nextVersion"] == "3"
    moved = call("PUT", "/versions/1", {"properties": {"modelUri": "azureml://datastores/d/paths/other/"}})
    assert moved.status_code == 400 and "Asset paths cannot be updated" in moved.text
    pending = call("POST", "/versions/3/startPendingUpload", {"pendingUploadType": "TemporaryBlobReference"})
    assert pending.status_code in (404, 501) and "startPendingUpload" in pending.text


def test_the_factory_mirror_step_registers_the_validated_checkpoint_with_the_compute_identity(
    sandbox_env: Sandbox,
) -> None:
    """pl_train_validate_mirror's bodies, evaluated by the ADF engine, sent as the factory would (the Data Factory
    run itself is not emulated in this branch): the mirror job runs `model mirror` with the compute's identity."""
    from cicd_tools.adf.expressions import evaluate_json
    from cicd_tools.adf.expressions.types import EvalContext
    from cicd_tools.codeassets.sdk import create_code

    sb = sandbox_env
    ml = ml_client(sb)
    codes = {name: create_code(ml, name, "1", REPO / "aml" / "src" / folder) for name, folder in
             (("training-code", "train"), ("validation-code", "validate"), ("mirror-code", "mirror"))}
    child = str(uuid.uuid4())  # TrainAndValidate's child run (pl_train_and_validate)
    inner = EvalContext(parameters={"runTag": "nightly", "pollSeconds": 1, "expectedCodeIds": {}},
                        system={"RunId": child})
    for activity in ("Train", "Validate"):
        params = child_parameters(load("pl_train_and_validate"), activity, inner)
        code = codes[params["assetName"]]
        submit(sb, params, {"assetId": code.id, "version": code.version})

    outer = load("pl_train_validate_mirror")["properties"]["activities"]
    wanted = next(a for a in outer if a["name"] == "MirrorWanted")
    mirror_activity = wanted["typeProperties"]["ifTrueActivities"][0]
    ctx = EvalContext(parameters={"runTag": "nightly", "mirrorModel": True, "modelName": "linear-model",
                                  "pollSeconds": 1, "expectedCodeIds": {}},
                      global_parameters={"armEndpoint": sb.arm_endpoint},
                      activity_outputs={"TrainAndValidate": {"pipelineRunId": child}}, system={"RunId": "outer"})
    assert evaluate_json(wanted["typeProperties"]["expression"], ctx) is True
    defaults = {k: v.get("defaultValue") for k, v in load("pl_run_aml_job")["properties"]["parameters"].items()}
    params = {**defaults, **evaluate_json(mirror_activity["typeProperties"]["parameters"], ctx)}
    assert params["assetName"] == "mirror-code"

    workspace_id = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
                    f"Microsoft.MachineLearningServices/workspaces/{sb.layout.workspace}")
    compute = sb.layout.compute_principal
    sb.control.assign_role(compute, "AzureML Data Scientist", workspace_id)
    sb.control.assign_role(compute, "Storage Blob Data Contributor",
                           sb.layout.account_id(sb.layout.workspace_storage_account))
    job = submit(sb, params, {"assetId": codes["mirror-code"].id, "version": "1"})
    assert job == f"mirror-nightly-{child}"

    model = ml.models.get("linear-model", "1")
    assert model.tags["cicd.trainingJob"] == f"train-nightly-{child}"
    assert model.tags["cicd.validationJob"] == f"validate-nightly-{child}"
    assert model.tags["cicd.codeId"] == codes["training-code"].id
    assert model.creation_context.created_by == compute  # registered by the compute's identity, not CI's


def test_from_path_uploads_nothing_from_outside_the_folder_and_lists_each_skip(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 19 point 3: `leak.txt -> secret`, `passwd -> /etc/passwd`, a folder link out, a loop, a FIFO."""
    import os

    secret = b"not-for-the-registry " + uuid.uuid4().hex.encode()
    (tmp_path / "secret").write_bytes(secret)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.bin").write_bytes(secret)
    run = tmp_path / "run"
    (run / "d").mkdir(parents=True)
    (run / "model.safetensors").write_bytes(b"weights")
    (run / "leak.txt").symlink_to(tmp_path / "secret")
    (run / "passwd").symlink_to("/etc/passwd")
    (run / "ext").symlink_to(tmp_path / "outside", target_is_directory=True)
    (run / "d" / "up").symlink_to("..", target_is_directory=True)
    os.mkfifo(run / "pipe")
    run_id = f"hostile-{uuid.uuid4().hex[:6]}"
    rc, doc, err = cli(capsys, "model", "mirror", "--from-path", str(run), "--run-id", run_id, "--name", MODEL,
                       "--new-version")
    assert rc == 0, err
    assert doc["files"] == ["model.safetensors"]
    assert {e["path"]: e["reason"] for e in doc["skippedUnsafe"]} == {
        "leak.txt": "outside-root", "passwd": "outside-root", "ext/": "outside-root", "d/up/": "symlink-loop",
        "pipe": "special-file"}
    model = ml_client(sandbox_env).models.get(MODEL, doc["modelVersion"])
    path = model.path.split("/paths/", 1)[1]
    with datastore(sandbox_env) as box:
        stored = {b.name[len(path):]: box.download_blob(b.name).readall()
                  for b in box.list_blobs(name_starts_with=path)}
    assert sorted(stored) == ["model.safetensors"]
    assert secret not in b"".join(stored.values())
