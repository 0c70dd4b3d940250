"""The whole flow's wall time in the sandbox, beside the seeds' script pattern on the same sandbox.

The script pattern: `firewall open --no-probe`, a fixed `sleep 30` "for the rule to propagate", smoke, register with
`--pointer`, then (when this build has `adf run`) the ADF run observed by a fixed `sleep 15` status poll (modelled
exactly: the run's own duration rounded up to the next 15 s), then `firewall close`.
Ours: one `cicd-tools flow` (polls the data plane, waits on the run).
Both run as CI would run them: one `cicd-tools` process per step, against the same sandbox with propagation delay
D. Prints the times and the ratio (goal <= 0.3); asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = ("--asset", f"training-code={REPO / 'aml/src/train'}",
          "--asset", f"validation-code={REPO / 'aml/src/validate'}")


def cli(env: dict[str, str], *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "cicd_tools.cli", *argv], env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"`cicd-tools {' '.join(argv)}` failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc


def has_command(*words: str) -> bool:
    from cicd_tools.cli.flow import missing_command
    from cicd_tools.cli.main import build_parser

    return missing_command(build_parser(), list(words)) is None


def script_pattern(env: dict[str, str], sleep_rule: float, sleep_poll: float, version: str, adf: bool) -> float:
    started = time.perf_counter()
    cli(env, "firewall", "open", "--no-probe")
    try:
        time.sleep(sleep_rule)
        cli(env, "storage", "smoke")
        cli(env, "code", "register", "--pointer", "--version", version, *ASSETS)
        if adf:
            # A fixed-interval poller sees the end of the run at its first poll after the run ended.
            run_started = time.perf_counter()
            cli(env, "adf", "run", "--pipeline", "pl_train_and_validate", "--param", "runTag=bench",
                "--param", "pollSeconds=2", "--wait")  # the factory's job poll as in cicd-tools.toml
            ran = time.perf_counter() - run_started
            time.sleep(math.ceil(ran / sleep_poll) * sleep_poll - ran)
    finally:
        cli(env, "firewall", "close", "--grace", "0")  # the seeds remove the rule once; flow watches 15 s
    return time.perf_counter() - started


def ours(env: dict[str, str], version: str, skips: list[str]) -> float:
    started = time.perf_counter()
    cli(env, "flow", "--config", str(REPO / "cicd-tools.toml"), "--code-version", version, *skips)
    return time.perf_counter() - started


def step_times(report: Path) -> list[tuple[str, float]]:
    """Each step's duration from the flow's evidence report."""
    import json

    doc = json.loads(report.read_text())
    return [(s["name"], float(s["durationSeconds"])) for s in doc["steps"] if s.get("durationSeconds") is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=5.0, help="propagation delay D in seconds (default 5)")
    parser.add_argument("--sleep-rule", type=float, default=30.0, help="the script's fixed sleep after the rule")
    parser.add_argument("--sleep-poll", type=float, default=15.0, help="the script's fixed status-poll sleep")
    args = parser.parse_args()

    from cicd_tools.sandbox.runtime import Sandbox

    adf = has_command("adf", "run") and has_command("aml", "verify")
    skips = [] if adf else ["--skip", "adf-run", "--skip", "aml-verify"]
    with tempfile.TemporaryDirectory(prefix="cicd-bench-flow-") as root, Sandbox(Path(root)) as sb:
        sb.control.set_propagation_delay(args.delay)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "CICD_", "IDENTITY_"))}
        env.update(sb.env())
        env["CICD_FIREWALL_STATE_FILE"] = str(Path(root) / "fw-state.json")
        env["CICD_REPORT"] = str(Path(root) / "evidence.json")
        # Registered once beforehand: both sides then get the same dedup answer (no upload shortcut for one side).
        cli(env, "code", "register", "--version", "1", *ASSETS)
        if adf:
            cli(env, "adf", "deploy", str(REPO / "adf"))
        script = script_pattern(env, args.sleep_rule, args.sleep_poll, "100", adf)
        sb.control.set_account_properties(network_acls={"ipRules": []})
        flow = ours(env, "200", skips)
        steps = step_times(Path(env["CICD_REPORT"]))
        sb.control.set_account_properties(network_acls={"ipRules": []})
        no_grace = ours({**env, "CICD_FIREWALL_GRACE": "0"}, "300", skips)
    scope = "whole chain" if adf else "first half (adf run / aml verify not in this build)"
    print(f"flow vs script pattern, sandbox D={args.delay:.0f} s, {scope}")
    print(f"{'script pattern s':>17} {'cicd-tools flow s':>18} {'ratio':>6}  (goal <= 0.3)")
    print(f"{script:>17.1f} {flow:>18.1f} {flow / script:>6.2f}  flow as shipped (close watches 15 s)")
    print(f"{script:>17.1f} {no_grace:>18.1f} {no_grace / script:>6.2f}  CICD_FIREWALL_GRACE=0 (removes once, like"
          " the script)")
    print("flow's steps (s): " + ", ".join(f"{name} {secs:.1f}" for name, secs in steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
