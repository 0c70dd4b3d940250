"""The habits users bring from `az`: output formats, --query, help, suggestions, completion, quiet and debug."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cicd_tools.cli.main import main
from cicd_tools.cli.render import render, to_table, to_tsv
from cicd_tools.report.model import EvidenceReport, StepRecord, write_report


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# az's own renderings of the same data (az's knack output: table headers capitalised, a dashed rule, booleans
# as Python prints them; tsv: scalar values of each object, tab-separated, nested values left out).
ROWS = [{"name": "read", "ok": True, "ms": 12, "detail": {"x": 1}}, {"name": "write", "ok": False, "ms": None}]


def test_table_has_az_headers_and_only_scalar_columns() -> None:
    assert to_table(ROWS).splitlines() == ["Name   Ok     Ms", "-----  -----  --", "read   True   12",
                                           "write  False"]


def test_tsv_prints_scalar_values_tab_separated_and_a_bare_scalar_alone() -> None:
    assert to_tsv(ROWS) == "read\tTrue\t12\nwrite\tFalse\t"
    assert to_tsv("10") == "10"


def test_query_then_tsv_gives_a_value_a_shell_can_capture() -> None:
    assert render([{"version": "10"}], "", "tsv", "[0].version") == "10"
    assert render({"a": [1, 2]}, "", "json", "a") == "[\n  1,\n  2\n]"
    assert render({"a": 1}, "prose", "none", None) is None


def report_file(tmp_path: Path) -> Path:
    rep = EvidenceReport(tool="t", startedAtUtc="2026-12-07T10:00:00Z", status="succeeded", exitCode=0,
                         steps=[StepRecord(name="register", status="ok", durationSeconds=1.0)])
    path = tmp_path / "evidence.json"
    write_report(path, rep)
    return path


@pytest.mark.parametrize("fmt", ["json", "jsonc", "yaml", "table", "tsv", "none"])
def test_report_show_renders_every_format_from_the_same_result(
        fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = report_file(tmp_path)
    code, as_json, _ = run(capsys, "-o", "json", "report", "show", str(path))
    assert code == 0
    doc = json.loads(as_json)
    code, out, _ = run(capsys, "report", "show", str(path), "-o", fmt)
    assert code == 0
    if fmt in ("json", "jsonc"):  # jsonc is plain JSON off a terminal
        assert json.loads(out) == doc
    elif fmt == "yaml":
        assert yaml.safe_load(out) == doc
    elif fmt == "none":
        assert out == ""
    elif fmt == "table":
        assert out.splitlines()[0].split()[:2] == ["SchemaVersion", "Tool"]
    else:
        assert out.split("\t")[:2] == ["1", "t"]


def test_report_show_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "report", "show", str(report_file(tmp_path)), "--query", "steps[0].name", "-o", "tsv")
    assert (code, out) == (0, "register\n")


def test_an_invalid_query_is_a_usage_error_with_one_json_document(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-o", "json", "report", "show", str(report_file(tmp_path)), "--query", "[0.")
    assert code == 2 and json.loads(out)["code"] == "InvalidQuery" and "JMESPath" in err


def test_a_mistyped_subcommand_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "firewall", "opne")
    assert code == 2 and "did you mean 'open'?" in err


def test_a_mistyped_flag_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "firewall", "open", "--acount", "x")
    assert code == 2 and "did you mean --account?" in err


def test_help_command_is_the_commands_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["help", "firewall", "close"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: cicd-tools firewall close")


def test_only_show_errors_keeps_progress_and_warnings_out_and_errors_in(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from cicd_tools.cli.console import setup_logging

    root_level = logging.getLogger().level
    try:
        setup_logging(0, only_errors=True)
        log = logging.getLogger("cicd_tools.storage.firewall")
        log.info("waiting for the rule")  # a progress line
        log.warning("a warning")
        log.error("the error")
        err = capsys.readouterr().err
        assert "waiting" not in err and "a warning" not in err and "the error" in err
        setup_logging(0)
        log.info("waiting for the rule")
        assert "waiting for the rule" in capsys.readouterr().err  # the default shows progress
    finally:
        logging.getLogger().handlers.clear()
        logging.getLogger().setLevel(root_level)


@pytest.mark.parametrize("argv", [["--debug", "doctor"], ["doctor", "--debug"], ["-vv", "doctor"]])
def test_debug_is_the_same_verbosity_as_vv(argv: list[str]) -> None:
    from cicd_tools.cli.main import _global_values, build_parser

    assert _global_values(build_parser().parse_args(argv))[2] == 2


def test_bash_completion_completes_subcommands(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    script = subprocess.run([sys.executable, "-m", "cicd_tools.cli", "completion", "bash"], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    (tmp_path / "c.bash").write_text(script)
    probe = (f"source {tmp_path / 'c.bash'}; COMP_WORDS=(cicd-tools firewall o); COMP_CWORD=2; "
             "COMP_LINE='cicd-tools firewall o'; COMP_POINT=${#COMP_LINE}; "
             "$(complete -p cicd-tools | sed -E 's/.*-F ([^ ]+).*/\\1/') cicd-tools o firewall; "
             "printf '%s\\n' \"${COMPREPLY[@]}\"")
    proc = subprocess.run([bash, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "open" in proc.stdout.split()
