"""CLI start-up: `cicd-tools --version` and each non-sandbox command's `--help` beside `python -c pass`.

Each row is the median of N paired runs (the command, then `python -c pass`, one pair at a time, so load from
other processes hits both sides alike) as a ratio to the bare interpreter. The command runs as the
`cicd-tools` console script does (the entry point named in pyproject.toml), in this interpreter.
Then it lists every `cicd_tools.sandbox` module that `python -X importtime` shows for `--version` and for each
non-sandbox command's `--help` (goal: none), and, for scale, a bare `import azure.ai.ml`.

Run: ``.venv/bin/python benchmarks/startup.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION_GOAL = 3.0  # issue 23: `--version` at most 3x bare python
HELP_GOAL = 4.0  # ... and every non-sandbox command's `--help` at most 4x


def entry_point_code() -> str:
    """``python -c`` code doing what the ``cicd-tools`` console script does."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module, _, function = scripts["cicd-tools"].partition(":")
    return f"import sys; from {module} import {function}; sys.exit({function}())"


# Bytecode is written as an installed CLI has it: with PYTHONDONTWRITEBYTECODE set (some CI images set it),
# every run of a source checkout would compile cicd_tools anew, which no user of a wheel pays.
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def elapsed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=False, cwd=ROOT, env=ENV)
    return time.perf_counter() - start


def paired(cmd: list[str], baseline: list[str], runs: int) -> tuple[float, float, float]:
    """(median seconds of cmd, median seconds of baseline, median of the per-pair ratios)."""
    elapsed(cmd), elapsed(baseline)  # warm the page cache
    mine, base, ratios = [], [], []
    for _ in range(runs):
        a = elapsed(cmd)
        b = elapsed(baseline)
        mine.append(a)
        base.append(b)
        ratios.append(a / b)
    return statistics.median(mine), statistics.median(base), statistics.median(ratios)


def sandbox_imports(cmd: list[str]) -> list[str]:
    """The ``cicd_tools.sandbox`` modules ``-X importtime`` reports for ``cmd`` (a python command line)."""
    done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, check=False,
                          cwd=ROOT, env=ENV)
    found = []
    for line in done.stderr.splitlines():
        name = line.rpartition("|")[2].strip()
        if line.startswith("import time:") and (name == "cicd_tools.sandbox" or name.startswith("cicd_tools.sandbox.")):
            found.append(name)
    return found


def non_sandbox_commands() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from cicd_tools.cli.main import COMMAND_MODULES

    return [m.rsplit(".", 1)[1] for m in COMMAND_MODULES if m.rsplit(".", 1)[1] != "sandbox"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="paired runs per row (default 15)")
    args = parser.parse_args()
    py = sys.executable
    cli = [py, "-c", entry_point_code()]
    baseline = [py, "-c", "pass"]
    rows: list[tuple[str, list[str], float]] = [("cicd-tools --version", [*cli, "--version"], VERSION_GOAL)]
    rows += [(f"cicd-tools {name} --help", [*cli, name, "--help"], HELP_GOAL) for name in non_sandbox_commands()]

    print(f"median of {args.runs} paired runs against `python -c pass` (Python {sys.version.split()[0]})")
    print(f"{'command':<34} {'median ms':>10} {'python ms':>10} {'ratio':>7} {'goal':>6}")
    worst: list[str] = []
    for label, cmd, goal in rows:
        mine, base, ratio = paired(cmd, baseline, args.runs)
        mark = "" if ratio <= goal else "  over"
        if mark:
            worst.append(label)
        print(f"{label:<34} {mine * 1000:>10.1f} {base * 1000:>10.1f} {ratio:>7.2f} {goal:>5.1f}x{mark}")
    sdk = statistics.median(elapsed([py, "-c", "import azure.ai.ml"]) for _ in range(3))
    print(f"{'(scale) python -c import azure.ai.ml':<34} {sdk * 1000:>10.1f}")

    print("\ncicd_tools.sandbox modules imported (python -X importtime):")
    leaks = 0
    for label, cmd, _ in rows:
        found = sandbox_imports(cmd)
        leaks += len(found)
        print(f"  {label}: {', '.join(found) if found else 'none'}")
    print(f"\n{len(worst)} row(s) over their goal{': ' + ', '.join(worst) if worst else ''}; "
          f"{leaks} sandbox module import(s) in non-sandbox commands")


if __name__ == "__main__":
    main()
