"""Cancelling an ADF run cancels the Azure ML jobs it submitted (in Azure, cancelling the run alone does not).

The shipped factory is deployed to the sandbox's Data Factory; `pl_run_aml_job` submits a ~40 s job (a code asset
whose script sleeps) and polls it. `adf run --wait` is stopped by its --timeout or by a signal: the run must end
Cancelled AND the job Canceled, with nothing left running, and the command must say so (stderr and JSON).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.layout import AGENT_IP
from cicd_tools.sandbox.runtime import Sandbox

REPO = Path(__file__).resolve().parents[2]
JOB_SECONDS = 40


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["--output", "json", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else None, captured.err


@pytest.fixture
def sleepy(sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> Path:
    """A published `sleep-code` asset whose script runs ~40 s, and the shipped factory deployed."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    code = repo / "sleepy"
    code.mkdir()
    (code / "sleep.py").write_text(f"import time\nprint('sleeping', flush=True)\ntime.sleep({JOB_SECONDS})\n")
    monkeypatch.chdir(repo)
    sandbox_env.control.set_account_properties(network_acls={"ipRules": [{"value": AGENT_IP, "action": "Allow"}]})
    rc, _, err = cli(capsys, "code", "register", "--name", "sleep-code", "--path", "sleepy", "--version", "1",
                       "--pointer")
    assert rc == 0, err
    shutil.copytree(REPO / "adf", tmp_path / "adf")
    rc, _, err = cli(capsys, "adf", "deploy", str(tmp_path / "adf"))
    assert rc == 0, err
    return repo


def run_args(job: str) -> list[str]:
    return ["adf", "run", "--pipeline", "pl_run_aml_job", "--param", "assetName=sleep-code", "--param",
            f"jobName={job}", "--param", "command=python sleep.py", "--param", "pollSeconds=1", "--wait",
            "--poll", "1s"]


def test_timeout_cancels_the_run_and_the_job_it_submitted(
    sandbox_env: Sandbox, sleepy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = "sleepy-timeout-1"
    rc, data, err = cli(capsys, *run_args(job), "--timeout", "10s")
    assert rc == 6, err
    assert data["status"] == "Cancelled"
    assert sandbox_env.control.aml_job(job)["status"] == "Canceled"  # not Running, not Completed
    cancel = data["cancel"]
    assert cancel["cancelledJobs"] == [job] and cancel["leftRunning"] == []
    assert [j["status"] for j in cancel["jobs"]] == ["Canceled"]
    assert f"cancelled Azure ML job(s) {job}" in err


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_a_signal_during_the_wait_cancels_the_run_and_the_job(
    sandbox_env: Sandbox, sleepy: Path, signum: signal.Signals
) -> None:
    job = "sleepy-signal-1"
    env = {**os.environ, "CICD_CI": "plain"}
    proc = subprocess.Popen([sys.executable, "-m", "cicd_tools.cli", "--output", "json", *run_args(job)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if sandbox_env.control.aml_job(job)["status"] == "Running":
                break
        except Exception:  # not submitted yet
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the job never started")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert sandbox_env.control.aml_job(job)["status"] == "Canceled"
    doc = json.loads(out)
    assert doc["cancel"]["cancelledJobs"] == [job] and doc["cancel"]["leftRunning"] == []
    assert doc["cancel"]["runStatus"] == "Cancelled"
    assert "cancelled Azure ML job(s)" in err
