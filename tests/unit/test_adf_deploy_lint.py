"""Issue 20 case 4: ``adf deploy`` publishes nothing that ``adf lint`` flags as an error, unless
``--allow-lint-errors``; the refusal comes before any call to Azure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cicd_tools.cli.main import main

REPO_ADF = Path(__file__).resolve().parents[2] / "adf"


def misplaced(tmp_path: Path) -> Path:
    """The shipped factory with pl_read_pointer's connectVia at the activity root (ADF010, an error)."""
    root = tmp_path / "adf"
    shutil.copytree(REPO_ADF, root)
    path = root / "pipeline" / "pl_read_pointer.json"
    doc = json.loads(path.read_text())
    read = doc["properties"]["activities"][0]
    read["connectVia"] = read["typeProperties"].pop("connectVia")
    path.write_text(json.dumps(doc))
    return root


@pytest.fixture
def factory_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CICD_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("CICD_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("CICD_FACTORY", "adf")
    monkeypatch.setenv("CICD_ARM_ENDPOINT", "https://127.0.0.1:9")  # nothing listens: a call would fail with 3


def test_deploy_refuses_what_adf_lint_flags_as_an_error(
    tmp_path: Path, factory_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = misplaced(tmp_path)
    assert main(["adf", "lint", str(root)]) == 1  # the linter's verdict on the same folder
    capsys.readouterr()
    assert main(["-o", "json", "adf", "deploy", str(root)]) == 2
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["code"] == "LintErrors" and "ADF010" in doc["message"]
    assert "--allow-lint-errors" in doc["hint"]


def test_the_shipped_factory_lints_clean_so_the_gate_lets_it_through(
    factory_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # no lint error: deploy goes on to read the factory (and fails to reach the closed port: exit 3, not 2)
    assert main(["-o", "json", "adf", "deploy", str(REPO_ADF)]) == 3
    assert "LintErrors" not in capsys.readouterr().out
