"""`cicd-tools doctor` catches the real failure mode: marshmallow 4 forced into the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def marshmallow4_overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real marshmallow 4 wheel installed where it shadows the venv's 3.x (like `pip install -U` would)."""
    target = tmp_path_factory.mktemp("mm4")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         "marshmallow>=4,<5"],
        check=True,
    )
    return target


def run_doctor(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "CICD_"))} | extra_env
    return subprocess.run(
        [sys.executable, "-m", "cicd_tools.cli", "--output", "json", "doctor",
         "--constraints", str(REPO / "constraints.txt")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )


def test_doctor_passes_on_the_pinned_environment() -> None:
    proc = run_doctor({})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


def test_doctor_fails_with_the_pip_fix_when_marshmallow_4_is_forced_in(marshmallow4_overlay: Path) -> None:
    proc = run_doctor({"PYTHONPATH": str(marshmallow4_overlay)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    failed = {c["name"]: c for c in report["checks"] if not c["ok"]}
    assert "marshmallow < 4" in failed
    assert "FieldInstanceResolutionError" in failed["azure.ai.ml imports"]["detail"]
    assert any("pip install 'marshmallow>=3.18,<4'" in fix for fix in report["fixes"])
