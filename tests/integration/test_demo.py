"""`make demo` keeps working: the whole CI flow against a fresh sandbox, as the README promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_ci_flow_and_publishes_the_returned_version() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZUREML_", "CICD_", "IDENTITY_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "cicd_tools.cli.demo"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # the private account refuses the agent until the rule is open, and the refusal is classified
    assert "AuthorizationFailure" in out
    # unchanged content requested as v2: the SDK returned v1 and the pointer says so
    assert "requested version 2, Azure ML returned EXISTING version 1" in out
    assert "rolled back training-code -> version 1" in out
    assert "rule 52.151.10.20 removed" in out
    assert "sandbox stopped" in out
    # the second half: the factory's jobs ran exactly the returned versions, read back from the evidence report
    assert "training-code: requested 11, returned 10, pointer 10, job ran training-code:10 -> agrees" in out
    assert "validation-code: requested 11, returned 10, pointer 10, job ran validation-code:10 -> agrees" in out
    # the misplaced connectVia is refused by the storage firewall, and a timed-out run is cancelled
    assert "AuthorizationFailure" in out.split("connectVia moved to the activity root")[1]
    assert '"message": "timed out after 3s; the run was cancelled; ' in out
    assert "nothing is left running" in out
