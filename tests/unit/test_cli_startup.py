"""Start-up: `--version` and a command's `--help` import only what they need (issue 23). Not timed:
`benchmarks/startup.py` prints the times; these tests read ``sys.modules`` of a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_tools import credentials
from cicd_tools.ci import CiKind
from cicd_tools.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [module.rsplit(".", 1)[1] for module in cli.COMMAND_MODULES]
NON_SANDBOX = [name for name in COMMANDS if name != "sandbox"]

# Runs the CLI's entry point in a fresh interpreter and prints, after the CLI's own output, the loaded modules.
PROBE = """
import json, sys
from cicd_tools.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # argparse's --help and --version exit from inside the parser
    code = exc.code
print("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_modules(*argv: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    last = done.stdout.rstrip().splitlines()[-1]
    assert last.startswith("MODULES "), done.stderr
    report = json.loads(last.removeprefix("MODULES "))
    assert report["code"] == 0, done.stderr
    modules: list[str] = report["modules"]
    return modules


def heavy(modules: list[str]) -> list[str]:
    """The sandbox's modules and the azure SDKs among ``modules``."""
    return [m for m in modules if m.split(".")[0] == "azure" or m == "cicd_tools.sandbox"
            or m.startswith("cicd_tools.sandbox.")]


def test_version_imports_no_command_module_no_sandbox_and_no_azure_sdk() -> None:
    modules = loaded_modules("--version")
    assert heavy(modules) == []
    assert [m for m in modules if m.startswith("cicd_tools.cli.") and m not in FACE] == []


def test_top_level_help_imports_no_command_module() -> None:
    modules = loaded_modules("--help")
    assert heavy(modules) == []
    assert [m for m in modules if m.startswith("cicd_tools.cli.") and m not in FACE] == []


# the parser, its help side and the renderer of the output formats (json/yaml/table...), which every command shares
FACE = ("cicd_tools.cli.main", "cicd_tools.cli.render", "cicd_tools.cli.help")


@pytest.mark.parametrize("command", NON_SANDBOX)
def test_a_non_sandbox_command_help_imports_no_sandbox_module_and_no_azure_sdk(command: str) -> None:
    modules = loaded_modules(command, "--help")
    assert f"cicd_tools.cli.{command}" in modules  # its own parser was built
    assert heavy(modules) == []


def test_the_probe_sees_the_sandbox_when_the_sandbox_command_runs() -> None:
    # The counterpart of the tests above: `sandbox --help` builds its parser from the sandbox's scenario list.
    assert "cicd_tools.sandbox.process" in loaded_modules("sandbox", "--help")


def test_top_level_help_without_the_modules_equals_the_full_parsers_help() -> None:
    # COMMAND_HELP stands in for the modules' own help lines: the command list must read the same either way.
    assert cli.build_parser(only=()).format_help() == cli.build_parser().format_help()


def test_the_spelled_out_choices_equal_their_sources() -> None:
    assert ("auto", *(kind.value for kind in CiKind)) == cli.CI_CHOICES
    assert cli.MODES == credentials.MODES


def test_a_command_named_on_the_line_gets_its_full_parser_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # Only `report` is loaded for this line; its subcommand, flags and handler must all be there.
    assert cli.main(["report", "schema", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["title"]
