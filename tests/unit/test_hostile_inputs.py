"""Every reader refuses resource bombs with a usage error, in bounded time and memory (issue 19, point 4).

Each case runs the CLI in a subprocess under ``ulimit -v`` 2 GiB (RLIMIT_AS) with a 20 s timeout, as the issue's
acceptance asks: before the limits, a billion-laughs YAML hung ``ci lint`` (killed at 300 s) and grew
``aml lint-job`` to 18 GB; JSON or YAML 100k levels deep exited 70 (RecursionError); ``report show /dev/zero``
reached 1.8 GB and ``report show <fifo>`` blocked; ``adf eval`` of ten nested replace() died of MemoryError;
a run-local Until doubling a string reached 2 GB. Now: exit 2 with a clear message and no traceback (a run-local
that reaches the evaluation budget is refused too, not reported as a failed run).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

AS_LIMIT = 2 * 1024**3
TIMEOUT = 20
CLI = ("import sys\ntry:\n    from cicd_tools.cli.main import main\nexcept ImportError:\n"
       "    from cicd_tools.cli import main\nsys.exit(main(sys.argv[1:]))")
DEEP = 100_000
HUGE = 20 * 1024 * 1024  # over both caps (10 MiB JSON, 1 MiB YAML)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def _pipeline(activities: object) -> str:
    return '{"name": "pl_bomb", "properties": {"activities": ' + str(activities) + "}}"


UNTIL_DOUBLING = {
    "name": "pl_double",
    "properties": {
        "variables": {"s": {"type": "String", "defaultValue": "ab"}, "t": {"type": "String"}},
        "activities": [{
            "name": "Grow", "type": "Until",
            "typeProperties": {
                "expression": {"value": "@equals(1, 2)", "type": "Expression"},
                "activities": [
                    {"name": "Double", "type": "SetVariable", "typeProperties": {
                        "variableName": "t",
                        "value": {"value": "@concat(variables('s'), variables('s'))", "type": "Expression"}}},
                    {"name": "Back", "type": "SetVariable",
                     "dependsOn": [{"activity": "Double", "dependencyConditions": ["Succeeded"]}],
                     "typeProperties": {"variableName": "s",
                                        "value": {"value": "@variables('t')", "type": "Expression"}}},
                ],
            },
        }],
    },
}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    files = {
        "nested.yml": "jobs: " + "[" * DEEP + "]" * DEEP + "\n",
        "aliased.yml": billion_laughs(),
        "huge.yml": "steps:\n" + "  - script: echo hello world\n" * (HUGE // 28),
        "nested.json": _pipeline("[" * DEEP + "]" * DEEP),
        "huge.json": _pipeline("[" + ", ".join(['{"name": "a", "type": "Wait"}'] * (HUGE // 30)) + "]"),
        "until.json": json.dumps(UNTIL_DOUBLING),
    }
    out = {}
    for name, text in files.items():
        (root / name).write_text(text)
        out[name] = root / name
    factory = root / "factory"
    (factory / "pipeline").mkdir(parents=True)
    (factory / "pipeline" / "pl_bomb.json").write_text(files["nested.json"])
    out["factory"] = factory
    os.mkfifo(root / "fifo")
    out["fifo"] = root / "fifo"
    return out


def _replace_bomb() -> str:
    expr = "'a'"
    for _ in range(10):
        expr = f"replace({expr}, 'a', 'aaaaaaaaaa')"
    return "@" + expr


# (argv with {file} placeholders, exit code, text the error must contain)
CASES: dict[str, tuple[list[str], int, str]] = {
    "ci lint nested": (["ci", "lint", "{nested.yml}"], 2, "levels deep"),
    "ci lint aliased": (["ci", "lint", "{aliased.yml}"], 2, "expands to more than"),
    "ci lint huge": (["ci", "lint", "{huge.yml}"], 2, "larger than 1 MiB"),
    "ci lint fifo": (["ci", "lint", "{fifo}"], 2, "not a regular file (a FIFO)"),
    "aml lint-job nested yaml": (["aml", "lint-job", "{nested.yml}"], 2, "levels deep"),
    "aml lint-job aliased": (["aml", "lint-job", "{aliased.yml}"], 2, "expands to more than"),
    "aml lint-job huge yaml": (["aml", "lint-job", "{huge.yml}"], 2, "larger than 1 MiB"),
    "aml lint-job nested json": (["aml", "lint-job", "{nested.json}"], 2, "levels deep"),
    "adf lint nested": (["adf", "lint", "{nested.json}"], 2, "levels deep"),
    "adf lint huge": (["adf", "lint", "{huge.json}"], 2, "larger than 10 MiB"),
    "adf diff nested": (["adf", "diff", "{factory}"], 2, "levels deep"),
    "adf deploy nested": (["adf", "deploy", "{factory}", "--dry-run"], 2, "levels deep"),
    "aml lint-job huge json": (["aml", "lint-job", "{huge.json}"], 2, "larger than 10 MiB"),
    "adf run-local nested": (["adf", "run-local", "{nested.json}"], 2, "levels deep"),
    "adf run-local huge": (["adf", "run-local", "{huge.json}"], 2, "larger than 10 MiB"),
    "adf run-local until doubling": (["adf", "run-local", "{until.json}"], 2, "characters long"),
    "report show nested": (["report", "show", "{nested.json}"], 2, "levels deep"),
    "report show huge": (["report", "show", "{huge.json}"], 2, "larger than 10 MiB"),
    "report show /dev/zero": (["report", "show", "/dev/zero"], 2, "not a regular file (a device)"),
    "report show fifo": (["report", "show", "{fifo}"], 2, "not a regular file (a FIFO)"),
    "adf eval replace bomb": (["adf", "eval", _replace_bomb()], 2, "characters long"),
    "adf eval nested item": (["adf", "eval", "@item()", "--item", "[" * 50_000 + "]" * 50_000], 2, "levels deep"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_reader_refuses_the_bomb_within_the_limits(case: str, bombs: dict[str, Path]) -> None:
    template, expected_rc, expected_text = CASES[case]
    argv = [str(bombs[a[1:-1]]) if a.startswith("{") and a.endswith("}") else a for a in template]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(bombs["factory"].parent),
           "PYTHONPATH": str(Path(__file__).parents[2]), "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-c", CLI, *argv], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, preexec_fn=_limit_memory, check=False,
                          cwd=bombs["factory"].parent)
    output = done.stdout + done.stderr
    assert done.returncode == expected_rc, output[-2000:]
    assert expected_text in output, output[-2000:]
    assert "Traceback" not in output and "internal error" not in output and "MemoryError" not in output
