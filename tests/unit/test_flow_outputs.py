"""Issue 20 case 5 (the flow's CI outputs): no process ids, one name per asset, no output set twice."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cicd_tools.ci import parse_github_output_file
from cicd_tools.cli import flow as flow_cmd
from cicd_tools.cli import main as cli
from tests.unit import test_flow
from tests.unit.test_flow import FakeOperations

repo = test_flow.repo  # the same repository fixture


def _names(text: str) -> list[str]:
    """Every output name the step wrote to $GITHUB_OUTPUT, in order, repeats kept."""
    return [m.group(1) for m in re.finditer(r"^([A-Za-z0-9_]+)(?:<<|=)", text, re.MULTILINE)]


def test_flow_outputs_hold_no_pid_one_pointer_version_per_asset_and_no_duplicates(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = repo / "cicd-tools.toml"
    config.write_text(config.read_text() + '\n[mirror]\nenabled = true\nname = "linear-model"\n')
    outputs = repo / "outputs.txt"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(repo / "summary.md"))
    fake = FakeOperations()
    monkeypatch.setattr(flow_cmd, "operations", lambda: fake)
    monkeypatch.setattr(flow_cmd, "missing_command", lambda parser, argv: None)
    assert cli.main(["--ci", "github", "flow"]) == 0
    text = outputs.read_text()
    names = _names(text)
    written = parse_github_output_file(text)
    assert "4242" not in text  # the fake close stops guard process 4242: a pid is no output
    assert written["guardStopped"] == "true"
    assert "pointerVersion" not in written  # the last asset's version under a shared name would mislead
    assert written["training_code_pointerVersion"] == "3" and written["validation_code_pointerVersion"] == "7"
    assert names.count("modelName") == 1
    assert all(names.count(n) == 1 for n in names if n.endswith("pointerVersion"))
