"""`aml verify` against the sandbox: a job's codeId against the pointer history, the code hash its output recorded."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from cicd_tools.cli.main import main
from cicd_tools.sandbox.layout import AGENT_IP
from cicd_tools.sandbox.runtime import Sandbox

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout holding the shipped training code; the CLI's working directory."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    shutil.copytree(REPO / "aml" / "src" / "train", root / "src" / "train")
    monkeypatch.chdir(root)
    return root


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["--output", "json", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def open_pointer_storage(sb: Sandbox) -> None:
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": AGENT_IP, "action": "Allow"}]})
    service = BlobServiceClient(sb.private_blob_endpoint, credential=ManagedIdentityCredential())
    with contextlib.suppress(ResourceExistsError):
        service.create_container("ml-globals")


def arm(sb: Sandbox, method: str, path: str, body: Any = None) -> requests.Response:
    token = ManagedIdentityCredential().get_token(f"{sb.arm_endpoint}/.default").token
    ws = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
          f"Microsoft.MachineLearningServices/workspaces/{sb.layout.workspace}")
    return requests.request(method, f"{sb.arm_endpoint}{ws}{path}?api-version=2025-09-01", json=body,
                            headers={"Authorization": f"Bearer {token}"}, verify=str(sb.ca_bundle), timeout=30)


def run_training_job(sb: Sandbox, code_id: str) -> str:
    """PUT a training job as ADF's SubmitJob does and wait for its end; its name."""
    ws = code_id.split("/codes/")[0]
    name = f"train-{uuid.uuid4().hex[:8]}"
    response = arm(sb, "PUT", f"/jobs/{name}", {"properties": {
        "jobType": "Command", "command": "python train.py --epochs 2 --model-dir ${{outputs.model}}",
        "codeId": code_id, "environmentId": f"{ws}/environments/pytorch-gpu/versions/1",
        "computeId": f"{ws}/computes/aks-gpu", "resources": {"instanceCount": 1, "instanceType": "gpu-a100"},
        "outputs": {"model": {"jobOutputType": "custom_model", "mode": "ReadWriteMount"}}}})
    assert response.status_code == 201, response.text
    end = time.monotonic() + 60
    while arm(sb, "GET", f"/jobs/{name}").json()["properties"]["status"] not in ("Completed", "Failed"):
        assert time.monotonic() < end
        time.sleep(0.1)
    return name


def test_verify_proves_the_job_ran_the_version_published_when_it_was_created(
    sandbox_env: Sandbox, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_pointer_storage(sandbox_env)
    rc, first, _ = cli(capsys, "code", "register", "--name", "training-code", "--path", "src/train",
                       "--version", "1", "--pointer")
    assert rc == 0
    job = run_training_job(sandbox_env, first["assetId"])
    # A newer publication after the job does not change what the job should have run.
    (repo / "src" / "train" / "NOTES.md").write_text("v2\n")
    rc, second, _ = cli(capsys, "code", "register", "--name", "training-code", "--path", "src/train",
                        "--version", "2", "--pointer")
    assert (rc, second["version"]) == (0, "2")

    result = repo / "out" / "verify.json"
    rc, doc, _ = cli(capsys, "aml", "verify", "--job", job, "--pointer", "training-code", "--result-file", str(result))
    assert rc == 0, doc
    assert json.loads(result.read_text()) == doc
    assert doc["ok"] is True and doc["expectedCodeId"] == first["assetId"]
    [entry] = doc["jobs"]
    assert (entry["name"], entry["status"], entry["codeId"]) == (job, "Completed", first["assetId"])
    assert (entry["codeIdMatches"], entry["hashMatches"]) == (True, True)
    # The job's own output carried the hash; the expected one is the workspace's registration.
    assert entry["codeHash"] == entry["expectedHash"] == first["contentHash"]

    rc, _, _ = cli(capsys, "aml", "verify", "--job", job, "--expect-code-id", second["assetId"])
    assert rc == 5
    assert main(["aml", "verify", "--job", job, "--expect-code-id", second["assetId"]]) == 5
    text = capsys.readouterr().out
    assert first["assetId"] in text and second["assetId"] in text and "MISMATCH" in text


def test_verify_of_a_job_that_does_not_exist_exits_2_naming_it(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, doc, err = cli(capsys, "aml", "verify", "--job", "no-such-job", "--expect-code-id", "x")
    assert rc == 2
    assert "job no-such-job does not exist" in err and doc["code"] == "JobNotFound"


def test_verify_against_a_sandbox_that_is_down_exits_3(
    sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CICD_ARM_ENDPOINT", "https://127.0.0.1:9")
    rc, _, err = cli(capsys, "aml", "verify", "--job", "j", "--expect-code-id", "x")
    assert rc == 3, err


def test_verify_holds_a_job_to_its_flows_own_registration_and_says_when_the_pointer_moved(
    sandbox_env: Sandbox, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two publishers: ours registered version 1, a concurrent one moved the pointer to version 2 afterwards."""
    from cicd_tools.aml.operations import VerifyRequest, verify_jobs
    from cicd_tools.codeassets.workspace import WorkspaceRef
    from cicd_tools.credentials import build_credential
    from cicd_tools.settings.resolve import Settings
    from cicd_tools.storage.blob import container_client

    open_pointer_storage(sandbox_env)
    rc, ours, _ = cli(capsys, "code", "register", "--name", "training-code", "--path", "src/train",
                      "--version", "1", "--pointer")
    assert rc == 0
    job = run_training_job(sandbox_env, ours["assetId"])
    (repo / "src" / "train" / "NOTES.md").write_text("the other flow's content\n")
    rc, theirs, _ = cli(capsys, "code", "register", "--name", "training-code", "--path", "src/train",
                        "--version", "2", "--pointer")
    assert (rc, theirs["version"]) == (0, "2")

    settings = Settings.from_env()
    workspace = WorkspaceRef.from_settings(settings)

    def verify(expected: str) -> Any:
        request = VerifyRequest(workspace=workspace, jobs=(job,), pointers=("training-code",),
                                expected_code_ids={"training-code": expected})
        return verify_jobs(request, build_credential(), container=lambda: container_client(settings))

    held = verify(ours["assetId"])  # the job ran our registration: ok, and the moved pointer is reported
    assert held.ok and held.exit_code == 0
    assert held.pointer_moved == {"training-code": theirs["assetId"]}
    assert held.verdicts[0].note == f"the pointer moved to {theirs['assetId']} meanwhile"
    assert held.to_json()["pointerMoved"] == {"training-code": theirs["assetId"]}

    # A flow that registered version 2 but whose job ran version 1: a contract violation, whatever the pointer says.
    wrong = verify(theirs["assetId"])
    assert not wrong.ok and wrong.exit_code == 5 and wrong.pointer_moved == {}
    assert (wrong.verdicts[0].code_id, wrong.verdicts[0].expected_code_id) == (ours["assetId"], theirs["assetId"])


def test_verify_names_what_the_run_read_from_a_moved_pointer_without_access_to_the_pointer_account(
    sandbox_env: Sandbox, repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After flow's early close the agent cannot read the pointer any more; what the factory's run read from it is
    in the run's activity output (ARM), so verify still says "the pointer moved to X meanwhile" (issue 18)."""
    from cicd_tools.aml.operations import VerifyRequest, verify_jobs
    from cicd_tools.codeassets.workspace import WorkspaceRef
    from cicd_tools.credentials import build_credential
    from cicd_tools.settings.resolve import Settings
    from cicd_tools.storage.blob import container_client

    open_pointer_storage(sandbox_env)
    code = repo / "hello"
    code.mkdir()
    (code / "hello.py").write_text("print('ours')\n")
    rc, ours, _ = cli(capsys, "code", "register", "--name", "hello-code", "--path", "hello", "--version", "1",
                      "--pointer")
    assert rc == 0
    (code / "hello.py").write_text("print('theirs')\n")  # a concurrent publisher moves the pointer before the run
    rc, theirs, _ = cli(capsys, "code", "register", "--name", "hello-code", "--path", "hello", "--version", "2",
                        "--pointer")
    assert (rc, theirs["version"]) == (0, "2")
    shutil.copytree(REPO / "adf", tmp_path / "adf")
    assert cli(capsys, "adf", "deploy", str(tmp_path / "adf"))[0] == 0
    rc, run, err = cli(capsys, "adf", "run", "--pipeline", "pl_run_aml_job", "--param", "assetName=hello-code",
                       "--param", "jobName=hello-moved-1", "--param", "command=python hello.py", "--param",
                       "pollSeconds=1", "--wait", "--poll", "1s")
    assert rc == 0, err
    sandbox_env.control.set_account_properties(network_acls={"ipRules": []})  # the agent's rule is closed

    settings = Settings.from_env()
    request = VerifyRequest(workspace=WorkspaceRef.from_settings(settings), factory="adf-sandbox",
                            adf_run_id=run["runId"], pointers=("hello-code",),
                            expected_code_ids={"hello-code": ours["assetId"]})
    result = verify_jobs(request, build_credential(), container=lambda: container_client(settings))
    assert result.exit_code == 5  # the job ran the other publisher's version
    [verdict] = result.verdicts
    assert (verdict.code_id, verdict.expected_code_id) == (theirs["assetId"], ours["assetId"])
    assert result.pointer_moved == {"hello-code": theirs["assetId"]}
    assert verdict.note is not None and f"the pointer moved to {theirs['assetId']} meanwhile" in verdict.note
