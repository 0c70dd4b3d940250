"""azure-ai-ml's upload prints ``ESC[39m`` and blank lines to stderr; a CI log (no TTY) must get neither.

The real SDK uploads a small folder to the sandbox workspace's storage; stderr is what pytest captures
(no terminal), as in a CI step.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.runtime import Sandbox


def test_code_register_writes_no_escape_codes_or_blank_lines_to_a_ci_log(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    code = root / "src"
    code.mkdir()
    (code / "train.py").write_text(f"print('training {uuid.uuid4().hex}')\n")  # new content: a real upload
    monkeypatch.chdir(root)
    monkeypatch.delenv("NO_COLOR", raising=False)
    name = f"console-{uuid.uuid4().hex[:8]}"

    code_rc = main(["--ci", "plain", "--output", "json", "code", "register", "--name", name, "--path", "src",
                    "--version", "1"])

    out, err = capsys.readouterr()
    assert code_rc == 0, err
    doc = json.loads(out)
    assert doc["version"] == "1" and doc["dedup"] is False  # the SDK uploaded, so its console code ran
    assert "\x1b[" not in err
    assert not re.search(r"(^|\n)[ \t]*\n", err), f"blank lines on stderr: {err!r}"
    assert f"registering {name}:1" in err  # our own progress line says what was awaited
