"""Issue 18, case 1: two flows at once on the same account, workspace and assets, with different content.

Whatever the interleaving, a flow that exits 0 shows, in its report, jobs whose code ids are the asset ids it
registered itself; any other outcome is a non-zero exit that names the concurrent version. Trials: 3 here (each
pair of flows takes some 20-30 s); CICD_TEST_FLOW_TRIALS=10 runs the issue's ten.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_tools.cli.main import main
from cicd_tools.report.model import EvidenceReport
from cicd_tools.sandbox.runtime import Sandbox
from tests.integration.flow_configs import whole_chain

REPO = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("CICD_TEST_FLOW_TRIALS", "3"))



def checkout(root: Path, tag: str) -> Path:
    """A repository with the shipped code, changed so its content hash (and so its registration) is its own."""
    (root / ".git").mkdir(parents=True)
    shutil.copytree(REPO / "aml", root / "aml")
    for folder in ("train", "validate"):
        with open(root / "aml" / "src" / folder / "codehash.py", "a", encoding="utf-8") as fh:
            fh.write(f"\n# {tag}\n")
    (root / "cicd-tools.toml").write_text(whole_chain(tag, timeout="5m"))
    return root


def version_of(asset_id: str | None) -> str | None:
    return asset_id.rsplit("/versions/", 1)[1] if asset_id and "/versions/" in asset_id else None


@pytest.mark.slow
def test_two_concurrent_flows_never_exit_green_with_the_other_flows_code(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["adf", "deploy", str(REPO / "adf")]) == 0
    capsys.readouterr()
    outcomes: list[str] = []
    for trial in range(TRIALS):
        flows = {}
        for side, version in (("a", 100 + 2 * trial), ("b", 101 + 2 * trial)):
            root = checkout(tmp_path / f"t{trial}{side}", f"t{trial}{side}")
            env = {**os.environ, "CICD_FIREWALL_STATE_FILE": str(root / "fw-state.json")}
            flows[side] = (root, subprocess.Popen(
                [sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "flow", "--code-version", str(version)],
                cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = {side: (root, proc.returncode if proc.wait(timeout=300) is not None else None,
                          proc.communicate()[1]) for side, (root, proc) in flows.items()}
        reports = {side: EvidenceReport.model_validate_json((root / "out" / "evidence.json").read_text())
                   for side, (root, _, _) in results.items()}
        registered = {side: {a.name: a.assetId for a in rep.assets if a.assetId} for side, rep in reports.items()}
        for side, (_root, code, err) in results.items():
            other = "b" if side == "a" else "a"
            report = reports[side]
            if code == 0:
                jobs = [job for ver in report.verify for job in ver.jobs]
                assert jobs, f"trial {trial} flow {side} exited 0 without verified jobs"
                own = set(registered[side].values())
                for job in jobs:  # the invariant: a green flow's jobs ran exactly what this flow registered
                    assert job.codeId in own, (trial, side, job.codeId, own)
                outcomes.append("green")
            else:
                theirs = {version_of(i) for i in registered[other].values()} - {None}
                # PointerSuperseded names it as "(<version>, registered <time>)" (pointer/contract.py)
                assert any(f"versions/{v}" in err or f":{v}" in err or f"({v}, registered" in err
                           for v in theirs), (
                    f"trial {trial} flow {side} exited {code} without naming the concurrent version {theirs}:\n"
                    + err[-3000:])
                outcomes.append(f"exit {code}")
    print(f"{TRIALS} trials, 2 flows each: " + ", ".join(outcomes))
