"""The shipped factory, run by `adf run-local` against the sandbox: train, then validate on the checkpoint train wrote.

`adf run-local` evaluates the pipelines with the ADF expression engine and makes the WebActivity calls for real
(tokens from the CI identity, the pointer read through the private endpoint, the job PUT and GET polls to the
sandbox's Azure ML). Only the factory's global parameters are pointed at the sandbox and the poll interval is
shortened (`pollSeconds=1`); the pipelines are the shipped ones. Then `aml verify` proves each job ran its
pointer's version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.layout import AGENT_IP
from cicd_tools.sandbox.runtime import Sandbox

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the factory with the sandbox's globals, and a checkout holding aml/ (the CLI's cwd)."""
    sb = sandbox_env
    shutil.copytree(REPO / "adf", tmp_path / "adf")
    factory = tmp_path / "adf" / "factory" / "adf-sandbox.json"
    doc = json.loads(factory.read_text())
    values = {"storageBlobEndpoint": sb.private_blob_endpoint, "armEndpoint": sb.arm_endpoint,
              "subscriptionId": sb.subscription_id, "resourceGroup": sb.resource_group,
              "workspaceName": sb.layout.workspace, "computeName": sb.layout.compute}
    for name, value in values.items():
        doc["properties"]["globalParameters"][name]["value"] = value
    factory.write_text(json.dumps(doc))
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    shutil.copytree(REPO / "aml", repo / "aml")
    monkeypatch.chdir(repo)
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": AGENT_IP, "action": "Allow"}]})
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["--output", "json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_the_shipped_factory_trains_then_validates_on_that_checkpoint_and_verify_passes(
    sandbox_env: Sandbox, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published = {}
    for name, folder in (("training-code", "aml/src/train"), ("validation-code", "aml/src/validate")):
        rc, doc = cli(capsys, "code", "register", "--name", name, "--path", folder, "--version", "1", "--pointer")
        assert rc == 0
        published[name] = doc["assetId"]
    rc, run = cli(capsys, "adf", "run-local", str(workspace / "adf" / "pipeline" / "pl_train_and_validate.json"),
                  "--factory", str(workspace / "adf"), "--param", "runTag=nightly",
                  "--param", "pollSeconds=1")
    assert rc == 0, json.dumps(run)[:2000]
    jobs = [e["path"].rsplit("/", 1)[1] for e in sandbox_env.state.requests()
            if e["method"] == "PUT" and "/jobs/" in e["path"]]
    assert [j.split("-")[0] for j in jobs] == ["train", "validate"]
    train, validate = (sandbox_env.control.aml_job(j) for j in jobs)
    assert train["status"] == validate["status"] == "Completed"
    trained = json.loads(train["log"][-1])
    validated = json.loads(validate["log"][-1])
    assert validated["passed"] is True
    assert validated["trainedByCodeHash"] == trained["codeHash"]  # validation read the checkpoint train wrote

    for job, asset in zip(jobs, ("training-code", "validation-code"), strict=True):
        rc, doc = cli(capsys, "aml", "verify", "--job", job, "--pointer", asset)
        assert rc == 0, doc
        assert doc["jobs"][0]["codeId"] == doc["expectedCodeId"] == published[asset]
        assert doc["jobs"][0]["hashMatches"] is True


def test_a_run_pinned_to_other_versions_fails_before_submitting_and_a_matching_pin_runs_them(
    sandbox_env: Sandbox, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """expectedCodeIds pins the run: a pointer naming another version fails the run naming both ids, no job."""
    published = {}
    for name, folder in (("training-code", "aml/src/train"), ("validation-code", "aml/src/validate")):
        rc, doc = cli(capsys, "code", "register", "--name", name, "--path", folder, "--version", "1", "--pointer")
        assert rc == 0
        published[name] = doc["assetId"]
    pipeline = str(workspace / "adf" / "pipeline" / "pl_train_and_validate.json")
    # The flow registered version 2 of training-code, but the pointer (moved by another flow) names version 1.
    expected = {"training-code": published["training-code"].rsplit("/", 1)[0] + "/2",
                "validation-code": published["validation-code"]}
    rc, run = cli(capsys, "adf", "run-local", pipeline, "--factory", str(workspace / "adf"),
                  "--param", "runTag=moved", "--param", "pollSeconds=1",
                  "--param", "expectedCodeIds=" + json.dumps(expected))
    assert rc == 4, json.dumps(run)[:2000]
    assert run["status"] == "Failed"
    text = json.dumps(run)
    assert f"pointer moved: it names {published['training-code']}, this run expects {expected['training-code']}" in text
    assert not [e for e in sandbox_env.state.requests() if e["method"] == "PUT" and "/jobs/" in e["path"]]

    # Pinned to exactly what the pointers name, each job is submitted with that id.
    rc, run = cli(capsys, "adf", "run-local", pipeline, "--factory", str(workspace / "adf"),
                  "--param", "runTag=pinned", "--param", "pollSeconds=1",
                  "--param", "expectedCodeIds=" + json.dumps(published))
    assert rc == 0, json.dumps(run)[:2000]
    jobs = [e["path"].rsplit("/", 1)[1] for e in sandbox_env.state.requests()
            if e["method"] == "PUT" and "/jobs/" in e["path"]]
    assert [j.split("-")[0] for j in jobs] == ["train", "validate"]
    for job, asset in zip(jobs, ("training-code", "validation-code"), strict=True):
        rc, doc = cli(capsys, "aml", "verify", "--job", job, "--expect-code-id", published[asset])
        assert rc == 0, doc
