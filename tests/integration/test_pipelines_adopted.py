"""A team adopts cicd-tools as the README says: a throwaway user repository holding only the quick-start workflow or
pipeline (plus its cicd-tools.toml and code), the action / template reference resolved to this checkout, and the
steps' scripts run with their env against the sandbox. The install step installs cicd-tools for real, from this
checkout with its constraints.txt, into a fresh venv; the flow goes green with the runner's own credential class.
And the Azure DevOps flow step keeps a credential for its whole life: tokens that expire mid-run are renewed."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.report.model import EvidenceReport
from cicd_tools.sandbox.identity import ci_oidc, entra
from cicd_tools.sandbox.identity.ci_credentials import credential_env
from cicd_tools.sandbox.identity.identity import decode_token
from cicd_tools.sandbox.runtime import Sandbox
from tests.integration.ci_runner import AzureJob, GitHubJob, install_venv, runner_path
from tests.unit.test_pipelines_quickstart import AZURE, GITHUB

CONFIG = """
[azure]
resource-group = "rg-mlops-sandbox"
workspace = "mlw-sandbox"

[storage]
account = "mlopssandboxsa"

[firewall]
timeout = "60"

[[code.assets]]
name = "train-{suffix}"
path = "src/train"

[adf]
enabled = false

[verify]
enabled = false
"""
pytestmark = pytest.mark.slow  # each test installs cicd-tools for real (a wheel build) and runs the flow

FIRST_HALF = {"firewall-open": "ok", "smoke": "ok", "register": "ok", "pointers": "ok", "adf-run": "skipped",
              "aml-verify": "skipped", "model-mirror": "skipped", "firewall-close": "ok"}
# Variables the runner's environment must not carry over from the test process.
NOT_INHERITED = ("PYTHONPATH", "VIRTUAL_ENV", "CICD_CREDENTIAL", "CICD_FIREWALL_STATE_FILE")


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_venv(tmp_path_factory.mktemp("runner-venv"), sys.executable)


def user_repository(root: Path) -> Path:
    (root / "src" / "train").mkdir(parents=True)
    (root / "src" / "train" / "train.py").write_text(f"print('training {root}')\n")
    (root / "cicd-tools.toml").write_text(CONFIG.format(suffix=uuid.uuid4().hex[:8]))
    return root


def runner_env(sb: Sandbox, mode: str, state: Path, venv_bin: Path) -> dict[str, str]:
    """The sandbox's variables with ``mode``'s credential variables, on a PATH whose python is the fresh venv."""
    env, unset = credential_env(mode, sb.env(), state)
    base = {k: v for k, v in os.environ.items() if k not in (*unset, *NOT_INHERITED)}
    base.update(env)
    base.pop("CICD_CREDENTIAL")  # `auto`: the variables the runner sets must be enough
    base["PATH"] = runner_path(venv_bin)
    base["PYTHONNOUSERSITE"] = "1"
    return base


def rules(sb: Sandbox) -> list[str]:
    return [r["value"] for r in sb.control.account()["properties"]["networkAcls"]["ipRules"]]


def assert_installed_from_this_checkout(venv_bin: Path) -> None:
    script = venv_bin / "cicd-tools"
    assert script.is_file(), "the install step put no cicd-tools on the runner"
    assert script.read_text().startswith(f"#!{venv_bin / 'python'}")


def test_the_github_quick_start_runs_the_flow_to_green_from_a_user_repository(
    sandbox_env: Sandbox, venv_bin: Path, tmp_path: Path
) -> None:
    sb = sandbox_env
    repo = user_repository(tmp_path / "repo")
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "cicd.yml").write_text(GITHUB)
    base = runner_env(sb, "workload-identity", tmp_path / "state", venv_bin)
    # Repository variables, passed to the action as inputs; a GitHub runner sets no token file.
    variables = {k: base.pop(k) for k in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID")}
    base.pop("AZURE_FEDERATED_TOKEN_FILE")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    base.update({"GITHUB_ACTIONS": "true", "CI": "true", "RUNNER_TEMP": str(runner_temp), "RUNNER_OS": "Linux",
                 "GITHUB_RUN_ID": "4711", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_WORKSPACE": str(repo),
                 "GITHUB_REF": "refs/heads/main", "GITHUB_SHA": "0" * 40,
                 "GITHUB_STEP_SUMMARY": str(runner_temp / "summary.md")})
    before = rules(sb)

    job = GitHubJob(repo, base, variables, "OWNER/cicd-tools@v1")
    (outputs,) = job.run(GITHUB, "cicd").values()

    report = EvidenceReport.model_validate_json(Path(outputs["report"]).read_text())
    assert report.status == "succeeded"
    assert {s.name: s.status for s in report.steps} == FIRST_HALF
    assert json.loads(outputs["versions"]) == {a.name: a.version for a in report.assets}
    assert rules(sb) == before  # the rule the flow opened is gone
    assert job.skipped_uses == ["actions/setup-python", "actions/cache"]  # this machine's Python, no cache
    assert_installed_from_this_checkout(venv_bin)
    flow = next(r for r in job.runs if r.name == "flow")
    assert "credential: ClientAssertionCredential" in flow.stderr  # GitHub OIDC, no az, no secret


def run_azure_quickstart(sb: Sandbox, venv_bin: Path, tmp_path: Path) -> tuple[AzureJob, Path]:
    workspace = tmp_path / "agent"
    user_repository(workspace / "self")
    staging = workspace / "a"
    staging.mkdir()
    base = runner_env(sb, "azure-pipelines", tmp_path / "state", venv_bin)
    # What AzureCLI@2 sets for a workload-identity service connection; the job token only where a step maps it.
    task_env = {k: base.pop(k) for k in ("AZURESUBSCRIPTION_CLIENT_ID", "AZURESUBSCRIPTION_TENANT_ID",
                                          "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID")}
    access_token = base.pop("SYSTEM_ACCESSTOKEN")
    base.update({"TF_BUILD": "True", "AGENT_TEMPDIRECTORY": str(tmp_path / "agent-temp"), "BUILD_BUILDID": "4711",
                 "BUILD_SOURCEBRANCH": "refs/heads/main", "BUILD_SOURCEVERSION": "0" * 40})
    (tmp_path / "agent-temp").mkdir()
    variables = {"Pipeline.Workspace": str(workspace), "System.AccessToken": access_token,
                 "System.JobId": str(uuid.uuid4()), "Build.ArtifactStagingDirectory": str(staging)}
    job = AzureJob(workspace, base, variables, task_env)
    job.run(AZURE)
    return job, staging / "evidence.json"


def test_the_azure_devops_quick_start_runs_the_flow_in_one_step_to_green(
    sandbox_env: Sandbox, venv_bin: Path, tmp_path: Path
) -> None:
    sb = sandbox_env
    before = rules(sb)
    job, evidence = run_azure_quickstart(sb, venv_bin, tmp_path)
    assert [(r.name, r.returncode) for r in job.runs] == [
        ("Install cicd-tools (the templates' own ref, with its constraints.txt) and check the environment", 0),
        ("Flow in one step (one credential for open → work → close)", 0),
        ("Close the firewall rule (always; flow closes it too, this is safe twice)", 0)], job.runs
    assert job.skipped == ["UsePythonVersion@0"]
    report = EvidenceReport.model_validate_json(evidence.read_text())
    assert report.status == "succeeded" and {s.name: s.status for s in report.steps} == FIRST_HALF
    assert rules(sb) == before
    assert_installed_from_this_checkout(venv_bin)
    assert "credential: AzurePipelinesCredential" in job.runs[1].stderr  # the template maps SYSTEM_ACCESSTOKEN


@pytest.fixture
def short_lived_tokens(sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Entra access tokens and Azure DevOps OIDC tokens that live 2 s instead of an hour / 15 minutes (the sandbox
    mints them in this process), every minted access token recorded; data-plane propagation 3 s, so the firewall
    open alone outlives the first token."""
    minted: list[dict[str, Any]] = []
    original: Callable[..., str] = entra.mint_token  # type: ignore[attr-defined]

    def mint(*args: Any, **kwargs: Any) -> str:
        token = original(*args, **kwargs)
        minted.append({**decode_token(token), "minted": time.time()})
        return token

    monkeypatch.setattr(entra, "TOKEN_LIFETIME", 2)
    monkeypatch.setattr(ci_oidc, "ADO_TOKEN_LIFETIME", 2)
    monkeypatch.setattr(entra, "mint_token", mint)
    sandbox_env.state.set_propagation_delay(3.0)
    try:
        yield minted
    finally:
        sandbox_env.state.set_propagation_delay(0.3)


def test_the_azure_devops_flow_step_keeps_a_credential_after_its_first_token_expires(
    sandbox_env: Sandbox, venv_bin: Path, tmp_path: Path, short_lived_tokens: list[dict[str, Any]]
) -> None:
    sb = sandbox_env
    before = rules(sb)
    sb.state.clear_requests()
    job, evidence = run_azure_quickstart(sb, venv_bin, tmp_path)
    finished = time.time()
    assert [r.returncode for r in job.runs] == [0, 0, 0], job.runs[1].stderr[-3000:]
    report = EvidenceReport.model_validate_json(evidence.read_text())
    assert report.status == "succeeded" and rules(sb) == before

    # The first access token expired while the step ran; later ones were minted after it had expired, and ARM
    # and storage accepted every call (they refuse an expired token), so the step never lost its credential.
    ours = [t for t in short_lived_tokens if t.get("name") == "ci-pipeline"]
    assert ours, "no access token was minted for the pipeline identity"
    first_expiry = min(float(t["exp"]) for t in ours)
    assert first_expiry < finished
    renewed = [t for t in ours if t["minted"] >= first_expiry]
    assert renewed, "no token was minted after the first one expired"
    # Each renewal went through a fresh Azure DevOps OIDC token (AzurePipelinesCredential), not a cached login.
    issued = sb.state.requests("issuance")
    assert sum(1 for r in issued if r["grant"] == "oidc-request") >= 2
    assert sum(1 for r in issued if r["grant"] == "client_assertion") >= 2
