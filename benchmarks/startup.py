"""CLI start-up: median wall time of `cicd-tools --version` beside `python -c pass`, as a ratio.

Also shows `cicd-tools pointer read --help` and, for scale, a bare `import azure.ai.ml`, which
is what every command would pay if the CLI imported it eagerly.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=False)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = sys.executable
    baseline = median_seconds([py, "-c", "pass"], args.runs)
    rows = [
        ("python -c pass (baseline)", baseline),
        ("cicd-tools --version", median_seconds([py, "-m", "cicd_tools.cli", "--version"], args.runs)),
        ("cicd-tools pointer read --help",
         median_seconds([py, "-m", "cicd_tools.cli", "pointer", "read", "--help"], args.runs)),
        ("python -c 'import azure.ai.ml'", median_seconds([py, "-c", "import azure.ai.ml"], max(3, args.runs // 5))),
    ]
    print(f"median of {args.runs} runs (Python {sys.version.split()[0]})")
    print(f"{'command':<34} {'median ms':>10} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:<34} {seconds * 1000:>10.1f} {seconds / baseline:>11.2f}")


if __name__ == "__main__":
    main()
