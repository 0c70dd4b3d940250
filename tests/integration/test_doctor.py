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


def test_doctor_online_names_the_class_that_answered_with_a_sandbox_token(
        sandbox_env: object, capsys: pytest.CaptureFixture[str]) -> None:
    # The sandbox's variables select ManagedIdentityCredential (App Service MSI endpoint); the real class asks it.
    from cicd_tools.cli.main import main

    code = main(["-o", "json", "doctor", "--skip-import", "--online"])
    report = json.loads(capsys.readouterr().out)
    token = {c["name"]: c for c in report["checks"]}["ARM token"]
    assert code == 0 and token["ok"], token
    assert token["detail"].startswith("ManagedIdentityCredential: token for https://")


def test_doctor_online_without_any_identity_fails_in_a_few_lines(tmp_path: Path) -> None:
    # No CI variables, no az, no MSI endpoint: DefaultAzureCredential tries everything and fails. The doctor says
    # so in its own short words (the SDK's 15-line dump stays out of stderr) and exits 2.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "CICD_", "IDENTITY_", "MSI_"))}
    env |= {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "HOME": str(tmp_path),
            "AZURE_CONFIG_DIR": str(tmp_path / "az"), "CICD_ARM_ENDPOINT": "https://127.0.0.1:1",
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:1", "IMDS_ENDPOINT": "http://127.0.0.1:1"}
    proc = subprocess.run([sys.executable, "-m", "cicd_tools.cli", "-o", "json", "doctor", "--skip-import",
                           "--online"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    token = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}["ARM token"]
    assert not token["ok"]
    assert token["detail"].startswith("DefaultAzureCredential: DefaultAzureCredential failed to retrieve a token")
    assert "tried: EnvironmentCredential (unavailable" in token["detail"]
    assert len(token["detail"].splitlines()) <= 3
    assert "Attempted credentials" not in proc.stderr and "troubleshoot" not in proc.stderr
