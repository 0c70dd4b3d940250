"""The shipped training and validation code: standard library only, real work, and it knows which code it is."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from azure.ai.ml._utils._asset_utils import get_content_hash, get_ignore_file

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "aml" / "src"


def load_codehash(folder: Path) -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"codehash_{folder.name}", folder / "codehash.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["train", "validate"])
def test_the_code_hash_a_job_records_equals_the_one_azure_ml_registers(name: str, tmp_path: Path) -> None:
    folder = tmp_path / name
    shutil.copytree(SRC / name, folder)
    # What a job run leaves beside the code (byte-code, logs) is ignored by .amlignore, as at registration.
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "codehash.cpython-311.pyc").write_bytes(b"x")
    (folder / "run.log").write_text("log\n")
    expected = get_content_hash(str(folder), get_ignore_file(str(folder)))  # the SDK's own hash
    assert load_codehash(folder).content_hash(folder) == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["train", "validate"])
def test_the_job_code_imports_only_the_standard_library(name: str) -> None:
    local = {p.stem for p in (SRC / name).glob("*.py")}
    for path in (SRC / name).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for module in names:
                top = module.split(".")[0]
                assert top in sys.stdlib_module_names or top in local or top == "__future__", (path, module)


def test_validate_scores_the_checkpoint_train_wrote_and_refuses_a_missing_one(tmp_path: Path) -> None:
    model, metrics = tmp_path / "model", tmp_path / "metrics"
    subprocess.run([sys.executable, "-B", "train.py", "--epochs", "3", "--model-dir", str(model)], cwd=SRC / "train",
                   check=True, capture_output=True)
    checkpoint = json.loads((model / "model.json").read_text())
    assert abs(checkpoint["w"] - 3.0) < 0.2 and abs(checkpoint["b"] + 1.5) < 0.2  # it learned the line
    done = subprocess.run([sys.executable, "-B", "validate.py", "--model-dir", str(model),
                           "--metrics-dir", str(metrics)], cwd=SRC / "validate", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads((metrics / "metrics.json").read_text())
    assert result["passed"] is True
    assert result["trainedByCodeHash"] == json.loads((model / "code.json").read_text())["codeHash"]
    missing = subprocess.run([sys.executable, "-B", "validate.py", "--model-dir", str(tmp_path / "none")],
                             cwd=SRC / "validate", capture_output=True, text=True)
    assert missing.returncode == 1 and "no checkpoint" in missing.stderr
