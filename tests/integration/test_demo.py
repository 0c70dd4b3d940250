"""`make demo` keeps working: the whole CI flow against a fresh sandbox, as the README promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # the suite's longest test: run first, so parallel workers share out the rest meanwhile
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
    # the sandbox secret is echoed masked, never in clear (secrets scan, issue 19)
    assert "export CICD_SANDBOX_SECRET=***" in out
    assert [line for line in out.splitlines() if "CICD_SANDBOX_SECRET=" in line and "=***" not in line] == []
    # issue 20 case 5: each step shows its command, its log, its result and its exit code, in that order
    steps = re.split(r"^\$ cicd-tools ", proc.stdout, flags=re.M)[1:]
    assert steps and all(re.search(r"^\[exit \d+( \(expected \d+\))?\]$", s, re.M) for s in steps)
    opened = next(s for s in steps if s.startswith("firewall open"))
    assert opened.index("opening 52.151.10.20 on") < opened.index("52.151.10.20 added on") < opened.index("[exit 0]")
    assert "[exit 3]" in next(s for s in steps if s.startswith("storage smoke --denied-budget 0"))
    # each flow's report is printed once: the first by flow, the second by `report show` (flow ran with -o none)
    assert proc.stdout.count("## cicd-tools flow: succeeded") == 2
    # `adf deploy` refuses what `adf lint` flags, until told otherwise
    assert "LintErrors" in out.split("connectVia moved to the activity root")[1]
    # `report show` of each flow's report opens with the chain and the timeline, and Mermaid's parser takes them
    from tests.unit.test_report_mermaid import mermaid_parse

    blocks = re.findall(r"^```mermaid\n(.*?)\n```$", proc.stdout, re.S | re.M)
    assert any(b.startswith("flowchart LR") for b in blocks) and any(b.startswith("gantt") for b in blocks)
    assert all(v["ok"] for v in mermaid_parse(*blocks)), blocks
