"""The second half of the chain for real: the shipped factory, deployed to the sandbox's Data Factory, runs
`pl_train_and_validate`; its WebActivities read the pointers through the managed private endpoint and submit the
jobs to the Kubernetes compute; `aml verify --adf-run-id` proves each job ran its pointer's version.

The factory is deployed unmodified (its globals name the real Azure host names, which the sandbox's Data Factory
resolves to itself); the run passes `pollSeconds=1` (30 s by default, for real AKS jobs).
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


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["--output", "json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


@pytest.fixture
def factory(sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped factory, and a checkout holding aml/ as the CLI's cwd."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    shutil.copytree(REPO / "aml", repo / "aml")
    monkeypatch.chdir(repo)
    sandbox_env.control.set_account_properties(network_acls={"ipRules": [{"value": AGENT_IP, "action": "Allow"}]})
    return REPO / "adf"


def test_the_deployed_factory_runs_the_published_versions_and_verify_by_run_id_proves_it(
    sandbox_env: Sandbox, factory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published: dict[str, str] = {}
    for name, folder in (("training-code", "aml/src/train"), ("validation-code", "aml/src/validate")):
        rc, doc = cli(capsys, "code", "register", "--name", name, "--path", folder, "--version", "1", "--pointer")
        assert rc == 0, doc
        published[name] = doc["assetId"]

    rc, plan = cli(capsys, "adf", "deploy", str(factory))
    assert rc == 0, plan
    rc, run = cli(capsys, "adf", "run", "--pipeline", "pl_train_and_validate", "--param", "runTag=e2e",
                  "--param", "pollSeconds=1", "--wait",
                  "--timeout", "3m", "--poll", "2s")
    assert rc == 0, json.dumps(run)[:3000]
    assert run["status"] == "Succeeded"

    rc, verdict = cli(capsys, "aml", "verify", "--adf-run-id", run["runId"],
                      "--pointer", "training-code", "validation-code")
    assert rc == 0, verdict
    assert verdict["ok"] is True
    ran = {job["name"].split("-")[0]: job for job in verdict["jobs"]}
    assert set(ran) == {"train", "validate"}
    # Each job ran exactly what its pointer published, and the code it ran hashes to the registered content.
    assert ran["train"]["codeId"] == published["training-code"]
    assert ran["validate"]["codeId"] == published["validation-code"]
    assert all(job["hashMatches"] is True for job in verdict["jobs"])
    # The validation job scored the checkpoint the training job wrote.
    train_log = sandbox_env.control.aml_job(ran["train"]["name"])["log"]
    validate_log = sandbox_env.control.aml_job(ran["validate"]["name"])["log"]
    assert json.loads(validate_log[-1])["trainedByCodeHash"] == json.loads(train_log[-1])["codeHash"]

    # Held to another version's id, the same job is a contract violation naming both ids.
    other = published["training-code"].rsplit("/", 1)[0] + "/2"
    rc, verdict = cli(capsys, "aml", "verify", "--job", ran["train"]["name"], "--expect-code-id", other)
    assert rc == 5
    assert verdict["jobs"][0]["codeId"] == published["training-code"]
    assert verdict["jobs"][0]["expectedCodeId"] == other


def test_verify_by_run_id_holds_each_job_to_the_pointer_its_run_named(
    sandbox_env: Sandbox, factory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With one pointer only, the validation job (which ran validation-code) does not match training-code."""
    for name, folder in (("training-code", "aml/src/train"), ("validation-code", "aml/src/validate")):
        rc, doc = cli(capsys, "code", "register", "--name", name, "--path", folder, "--version", "1", "--pointer")
        assert rc == 0, doc
    assert cli(capsys, "adf", "deploy", str(factory))[0] == 0
    rc, run = cli(capsys, "adf", "run", "--pipeline", "pl_train_and_validate", "--param", "runTag=one",
                  "--param", "pollSeconds=1", "--wait",
                  "--timeout", "3m", "--poll", "2s")
    assert rc == 0, json.dumps(run)[:3000]
    rc, verdict = cli(capsys, "aml", "verify", "--adf-run-id", run["runId"], "--pointer", "training-code")
    assert rc == 5
    by_kind = {job["name"].split("-")[0]: job for job in verdict["jobs"]}
    assert by_kind["train"]["ok"] is True
    assert by_kind["validate"]["codeIdMatches"] is False
