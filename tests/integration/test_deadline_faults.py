"""One deadline and one retry policy: `adf run --wait --timeout 10s` and `aml verify --timeout 10s` under a fault
matrix of the sandbox's ARM (429 with Retry-After 30, dropped connections, 503; transient or lasting).

A lasting fault ends in exit 6 at the deadline naming what was last seen (the old behaviour: exit 3 after minutes
of Retry-After sleeps, or exit 3 after three drops while the run went on to succeed); a transient one is retried
to success. No outcome is wrong: exit 0 only when the run succeeded / the job verified. The elapsed times are
printed (a benchmark-style record); the asserted bound is a hang guard far below the old behaviour.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.datafactory.store import df_state
from cicd_tools.sandbox.layout import AGENT_IP
from cicd_tools.sandbox.runtime import Sandbox

REPO = Path(__file__).resolve().parents[2]
STATUS_POLL = r"/pipelineruns/[^/?]+\?"
DEADLINE = 10.0
HANG_GUARD = DEADLINE + 8.0  # the old behaviour took 91 s (verify) and 271 s (adf run)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str, float]:
    started = time.monotonic()
    code = main(["--output", "json", *argv])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else None, captured.err, elapsed


@pytest.fixture
def factory(sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> Path:
    """A published `quick-code` asset (its script ends at once) and the shipped factory deployed."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "quick").mkdir()
    (repo / "quick" / "quick.py").write_text("print('done', flush=True)\n")
    monkeypatch.chdir(repo)
    sandbox_env.control.set_account_properties(network_acls={"ipRules": [{"value": AGENT_IP, "action": "Allow"}]})
    rc, _, err, _ = cli(capsys, "code", "register", "--name", "quick-code", "--path", "quick", "--version", "1",
                        "--pointer")
    assert rc == 0, err
    shutil.copytree(REPO / "adf", tmp_path / "adf")
    rc, _, err, _ = cli(capsys, "adf", "deploy", str(tmp_path / "adf"))
    assert rc == 0, err
    return repo


ADF_CASES: list[tuple[str, dict[str, Any], int, str | None]] = [
    # name, fault, expected exit, what the timeout must name
    ("429 Retry-After 30 on every status poll", {"method": "GET", "path": STATUS_POLL, "status": 429,
                                                  "retry_after": 30, "count": None}, 6, "HTTP 429"),
    ("three dropped status polls", {"method": "GET", "path": STATUS_POLL, "kind": "drop", "count": 3}, 0, None),
    ("every status poll dropped", {"method": "GET", "path": STATUS_POLL, "kind": "drop", "count": None}, 6,
     "connection failed"),
    ("two 503s on createRun", {"method": "POST", "path": "createRun", "status": 503, "count": 2}, 0, None),
    ("503 on every status poll", {"method": "GET", "path": STATUS_POLL, "status": 503, "count": None}, 6,
     "HTTP 503"),
]


def test_adf_run_under_the_fault_matrix_exits_6_at_the_deadline_or_succeeds(
    sandbox_env: Sandbox, factory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = df_state(sandbox_env).factories[sandbox_env.layout.factory.lower()].runs
    for i, (name, fault, expected, names) in enumerate(ADF_CASES):
        sandbox_env.control.clear_faults()
        sandbox_env.control.add_fault(service="arm", **fault)
        rc, data, err, elapsed = cli(
            capsys, "adf", "run", "--pipeline", "pl_run_aml_job", "--param", "assetName=quick-code", "--param",
            f"jobName=quick-adf-{i}", "--param", "command=python quick.py", "--param", "pollSeconds=1", "--wait",
            "--timeout", f"{DEADLINE:g}s", "--poll", "1s")
        with capsys.disabled():
            print(f"adf run, {name}: exit {rc} after {elapsed:.1f} s (deadline {DEADLINE:g} s)")
        sandbox_env.control.clear_faults()
        assert rc == expected, f"{name}: {err[-2000:]}"
        assert elapsed < HANG_GUARD, name
        run_id = data["runId"]
        if expected == 0:
            assert data["status"] == runs[run_id].status == "Succeeded", name
        else:
            assert names is not None and names in data["message"], (name, data["message"])
            assert data["lastSeen"].startswith(names.split()[0]), name
            assert runs[run_id].status != "Succeeded" or data["status"] != "Succeeded", name


VERIFY_CASES: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("429 Retry-After 30 on every activity query", {"method": "POST", "path": "queryActivityruns", "status": 429,
                                                    "retry_after": 30, "count": None}, 6, "HTTP 429"),
    ("one dropped activity query", {"method": "POST", "path": "queryActivityruns", "kind": "drop", "count": 1}, 0,
     None),
    ("two 503s on the job read", {"method": "GET", "path": r"/jobs/quick-verify\?", "status": 503, "count": 2}, 0,
     None),
    ("every job read dropped", {"method": "GET", "path": r"/jobs/quick-verify\?", "kind": "drop", "count": None},
     6, "connection failed"),
]


def test_aml_verify_under_the_fault_matrix_exits_6_at_the_deadline_or_verifies(
    sandbox_env: Sandbox, factory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, run, err, _ = cli(
        capsys, "adf", "run", "--pipeline", "pl_run_aml_job", "--param", "assetName=quick-code", "--param",
        "jobName=quick-verify", "--param", "command=python quick.py", "--param", "pollSeconds=1", "--wait",
        "--timeout", "2m", "--poll", "1s")
    assert rc == 0, err
    for name, fault, expected, names in VERIFY_CASES:
        sandbox_env.control.clear_faults()
        sandbox_env.control.add_fault(service="arm", **fault)
        rc, data, err, elapsed = cli(capsys, "aml", "verify", "--adf-run-id", run["runId"], "--pointer", "quick-code",
                                     "--timeout", f"{DEADLINE:g}s")
        with capsys.disabled():
            print(f"aml verify, {name}: exit {rc} after {elapsed:.1f} s (deadline {DEADLINE:g} s)")
        sandbox_env.control.clear_faults()
        assert rc == expected, f"{name}: {err[-2000:]}"
        assert elapsed < HANG_GUARD, name
        if expected == 0:
            assert data["ok"] is True and [j["name"] for j in data["jobs"]] == ["quick-verify"], name
        else:
            assert data["error"] == "DeadlineReached" and names is not None and names in data["message"], name
