"""Signal → exit latency of `cicd-tools flow` at every step, against the sandbox.

Runs the signal matrix of ``tests/integration/test_flow_signal_matrix.py`` (a sandbox fault holds each step open,
SIGTERM or SIGINT lands inside it) ``--trials`` times per step and prints, per step, the exit codes and the
measured time from the signal to the process's exit (min / median / max). Asserts nothing: the test holds the
invariants (exit 130, no rule, run or job left going, every created version in the report); this prints figures.

    python benchmarks/signals.py --trials 3 [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEST = "tests/integration/test_flow_signal_matrix.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="trials per step (default 3)")
    parser.add_argument("--workers", type=int, default=0, help="pytest-xdist workers (default 0: one process)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "signals.jsonl"
        env = {**os.environ, "CICD_TEST_SIGNAL_TRIALS": str(args.trials), "CICD_TEST_SIGNAL_LOG": str(log),
               "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider"]
        if args.workers:
            command += ["-n", str(args.workers)]
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if not rows:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return 1
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_case[str(row["case"])].append(row)
    print(f"signal -> exit of `cicd-tools flow`, {args.trials} trial(s) per step (seconds)")
    print(f"{'step (hold)':<16} {'signals':<16} {'exits':<14} {'min':>6} {'median':>7} {'max':>6}  left")
    for case, items in by_case.items():
        latencies = [float(i["latency"]) for i in items]
        signals = ",".join(sorted({str(i["signal"]) for i in items}))
        exits = ",".join(str(i["exit"]) for i in items)
        left = sum(len(i["rulesLeft"]) for i in items)
        print(f"{case:<16} {signals:<16} {exits:<14} {min(latencies):6.2f} {statistics.median(latencies):7.2f}"
              f" {max(latencies):6.2f}  {left} rule(s)")
    print(f"pytest: {proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.returncode}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
