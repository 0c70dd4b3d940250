"""`-o table|tsv|yaml|none` and `--query` on the commands people script in CI, against the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cicd_tools.cli.main import main
from cicd_tools.sandbox.layout import AGENT_IP
from cicd_tools.sandbox.runtime import Sandbox

REPO_ADF = Path(__file__).resolve().parents[2] / "adf"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["--ci", "plain", *argv])
    return code, capsys.readouterr().out


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out = run(capsys, "-o", "json", *argv)
    assert code == 0, out
    return json.loads(out)


def test_storage_diagnose_in_every_az_format(sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    doc = as_json(capsys, "storage", "diagnose")
    code, table = run(capsys, "-o", "table", "storage", "diagnose")
    assert code == 0
    head, rule = table.splitlines()[:2]
    scalars = [k for k, v in doc.items() if v is None or isinstance(v, str | int | float | bool)]
    assert head.split() == [k[:1].upper() + k[1:] for k in scalars] and set(rule) <= {"-", " "}
    code, tsv = run(capsys, "storage", "diagnose", "-o", "tsv")
    assert code == 0 and len(tsv.rstrip("\n").split("\t")) == len(scalars)
    code, text = run(capsys, "-o", "yaml", "storage", "diagnose")
    assert code == 0 and yaml.safe_load(text) == doc
    code, nothing = run(capsys, "-o", "none", "storage", "diagnose")
    assert (code, nothing) == (0, "")


def test_query_on_code_register_pointer_read_and_adf_run(
        sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox_env.control.set_account_properties(network_acls={"ipRules": [{"value": AGENT_IP, "action": "Allow"}]})
    code_dir = tmp_path / "repo" / "src"
    code_dir.mkdir(parents=True)
    (tmp_path / "repo" / ".git").mkdir()
    (code_dir / "train.py").write_text("print('formats')\n")
    monkeypatch.chdir(tmp_path / "repo")
    # az's style: the one value a later step needs, as a bare string
    code, version = run(capsys, "code", "register", "--name", "training-code", "--path", "src", "--version", "3",
                        "--pointer", "--query", "version", "-o", "tsv")
    assert code == 0 and version.strip() == "3"
    code, pointer = run(capsys, "pointer", "read", "--asset", "training-code", "--query", "version", "-o", "tsv")
    assert (code, pointer.strip()) == (0, "3")
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    capsys.readouterr()
    code, status = run(capsys, "adf", "run", "--pipeline", "pl_read_pointer", "--wait", "--poll", "1s",
                       "--query", "[status, activities[?activityName=='ReadPointer'].output.version | [0]]",
                       "-o", "tsv")
    assert code == 0 and status.splitlines() == ["Succeeded", "3"]  # a list of scalars: one per line, as az
