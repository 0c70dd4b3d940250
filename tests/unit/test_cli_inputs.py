"""Ordinary mistakes end with exit 2 and a message that says what to do; global flags go anywhere; broken pipes
end quietly. Each case was reproduced as an exit 70 (or a bare usage error) before the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cicd_tools.cli.console import BROKEN_PIPE, INTERNAL_ERROR
from cicd_tools.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--ci", "plain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("flags", [["--output", "json"], ["-o", "json"], ["--output=json"], ["-ojson"]])
def test_output_json_works_after_the_command(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "pointer", "schema", *flags)
    assert code == 0
    assert json.loads(out)["title"]


def test_az_habit_storage_diagnose_output_json_prints_the_error_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # no cicd-tools.toml to take the account from
    code, out, err = run(capsys, "storage", "diagnose", "--output", "json")
    assert code == 2
    doc = json.loads(out)
    assert doc["exitCode"] == 2 and "--account / CICD_STORAGE_ACCOUNT" in doc["message"]
    assert "usage:" not in err


def test_ci_verbose_and_credential_work_after_the_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import logging

    import cicd_tools.cli.main as cli

    chosen: list[str | None] = []

    @contextlib.contextmanager
    def record(mode: str | None) -> Iterator[None]:
        chosen.append(mode)
        yield

    monkeypatch.setattr(cli, "selected_mode", record)
    code = main(["pointer", "schema", "--ci", "plain", "-v", "--credential", "azure-cli", "-o", "json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)
    assert chosen == ["azure-cli"]
    assert logging.getLogger().level == logging.INFO  # one -v, given after the command


def test_a_usage_error_with_output_json_prints_exactly_one_json_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "-o", "json", "pointer", "read")  # --asset is required
    assert code == 2
    doc = json.loads(out)
    assert doc == {**doc, "error": "UsageError", "exitCode": 2} and "--asset" in doc["message"]
    assert "usage: cicd-tools pointer read" in err


def test_an_unknown_flag_after_the_command_with_output_json_is_one_json_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "pointer", "schema", "--bogus", "--output", "json")
    assert code == 2 and json.loads(out)["exitCode"] == 2


def test_a_crash_with_output_json_prints_exactly_one_json_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cicd_tools.cli.pointer as pointer_cmd

    def bug(args: object, ctx: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(pointer_cmd, "_schema", bug)
    code, out, err = run(capsys, "pointer", "schema", "-o", "json")
    assert code == INTERNAL_ERROR
    doc = json.loads(out)
    assert doc["exitCode"] == 70 and doc["error"] == "InternalError" and Path(doc["crashLog"]).is_file()
    assert "Traceback" not in err


def test_an_invalid_cicd_output_variable_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CICD_OUTPUT", "xml")  # not an az format either (yaml is one now)
    code, _, err = run(capsys, "pointer", "schema")
    assert code == 2 and "CICD_OUTPUT" in err


def test_connection_string_garbage_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "storage", "smoke", "--auth-mode", "key", "--connection-string", "garbage")
    assert code == 2
    assert "--connection-string is not a storage connection string" in err and "garbage" not in err


def test_doctor_with_a_missing_constraints_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "doctor", "--skip-import", "--constraints", "/nonexistent")
    assert code == 2 and "--constraints /nonexistent does not exist" in err


def test_sandbox_up_with_a_file_as_state_dir_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "a-file"
    state.write_text("x")
    code, _, err = run(capsys, "sandbox", "up", "--state-dir", str(state))
    assert code == 2 and "is not a folder" in err


def test_pointer_schema_write_to_a_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "pointer", "schema", "--write", str(tmp_path))
    assert code == 2 and "is a folder" in err


def test_adf_eval_with_deeply_nested_json_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 5000 + "]" * 5000
    code, _, err = run(capsys, "adf", "eval", "@pipeline().parameters.a", "--param", f"a={deep}")
    assert code == 2 and "--param" in err and "nests more than" in err
    code, _, err = run(capsys, "adf", "eval", "@item()", "--item", deep)
    assert code == 2 and "--item" in err


def test_firewall_ttl_beyond_the_limit_is_a_usage_error_before_any_azure_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "firewall", "open", "--ttl", "99999999d", "--no-probe", "--ip", "1.2.3.4",
                       "--subscription-id", "s", "--resource-group", "g", "--account", "acct")
    assert code == 2 and "--ttl" in err


def test_adf_lint_of_a_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "adf", "lint", str(tmp_path / "nosuch.json"))
    assert code == 2 and "no such file or folder" in err and "Fix the JSON syntax" not in err


def test_a_fifo_in_a_code_folder_gets_no_permissions_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "main.py").write_text("print(1)\n")
    os.mkfifo(tmp_path / "pipe")
    code, _, err = run(capsys, "code", "hash", str(tmp_path))
    assert code == 2
    assert "permission" not in err.lower() and ".amlignore" in err


def test_a_path_the_os_refuses_is_a_usage_error_naming_the_path(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cicd_tools.cli.pointer as pointer_cmd

    def refuse(args: object, ctx: object) -> None:
        raise IsADirectoryError(21, "Is a directory", "/some/where")

    monkeypatch.setattr(pointer_cmd, "_schema", refuse)
    code, _, err = run(capsys, "pointer", "schema")
    assert code == 2 and "/some/where" in err


def _with_closed_stdout(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a stdout pipe whose reader is already gone (what `| head -2` leaves behind)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "cicd_tools.cli", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("argv", [["pointer", "schema"], ["-o", "json", "pointer", "schema"]])
def test_a_closed_pipe_ends_quietly_with_141(argv: list[str]) -> None:
    proc = _with_closed_stdout(*argv)
    assert proc.returncode == BROKEN_PIPE
    assert proc.stderr == ""
