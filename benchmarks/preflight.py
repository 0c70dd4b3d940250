"""`cicd-tools preflight` wall time against the in-process sandbox: the default cloud and each scenario.

Prints the median of N subprocess runs (CLI start-up, credential, every ARM read) beside `cicd-tools --version`,
and how many ARM reads one run makes. The factory link is skipped while the sandbox does not serve factories.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def median_seconds(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        code = subprocess.run(cmd, capture_output=True, env=env, check=False).returncode
        times.append(time.perf_counter() - start)
    return statistics.median(times), code


def main() -> None:
    from cicd_tools.sandbox.runtime import ROUTE_MODULES, Sandbox

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    skip = [] if "cicd_tools.sandbox.datafactory" in ROUTE_MODULES else ["--skip", "factory"]
    with tempfile.TemporaryDirectory() as root, Sandbox(Path(root)) as sandbox:
        env = dict(os.environ, **sandbox.env())
        preflight = [py, "-m", "cicd_tools.cli", "preflight", "--adf-dir", "adf", *skip]
        baseline, _ = median_seconds([py, "-m", "cicd_tools.cli", "--version"], env, args.runs)
        print(f"median of {args.runs} runs; {' '.join(preflight[3:])}")
        print(f"{'case':<28} {'median s':>9} {'x --version':>12} {'exit':>5} {'ARM reads':>10}")
        print(f"{'cicd-tools --version':<28} {baseline:>9.2f} {1.0:>12.1f} {'':>5} {'':>10}")
        for case in ("default", "aks-identity-gap", "key-datastores"):
            sandbox.reset()
            if case != "default":
                sandbox.control.apply_scenario(case)
            seconds, code = median_seconds(preflight, env, args.runs)
            sandbox.state.clear_requests()
            subprocess.run(preflight, capture_output=True, env=env, check=False)
            reads = sum(1 for r in sandbox.state.requests() if r["service"] == "arm")
            print(f"{case:<28} {seconds:>9.2f} {seconds / baseline:>12.1f} {code:>5} {reads:>10}")


if __name__ == "__main__":
    main()
