"""Cancelling `cicd-tools firewall open` at every phase: time from the signal to exit 130, and rules left.

For each phase (IP echo, the ARM token fetch, the first ARM read, our PATCH in flight, the probe's token
fetch, the probe, the propagation poll) the sandbox holds that request (a ``delay`` fault) or the rule
never propagates (the poll); the CLI runs as a subprocess, gets SIGTERM or SIGINT once it is in the phase,
and we measure signal -> exit and then whether any rule or lease tag is left after the grace window
(``--grace``; a PATCH that lands after the exit is removed by the detached release watcher). Prints a table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PERMANENT = "20.30.40.50"
PHASES: dict[str, dict[str, Any] | None] = {
    "ip-echo": {"service": "echo", "kind": "delay", "delay": 15.0},
    "arm-token-fetch": {"service": "identity", "path": r"^/identity/[^?]*\?(?!.*storage)", "kind": "delay",
                        "delay": 15.0},
    "arm-read": {"service": "arm", "method": "GET", "path": "storageAccounts", "kind": "delay", "delay": 15.0},
    "patch-in-flight": {"service": "arm", "method": "PATCH", "kind": "delay", "delay": 3.0},
    "probe-token-fetch": {"service": "identity", "path": "storage", "kind": "delay", "delay": 15.0},
    "probe": {"service": "blob", "kind": "delay", "delay": 15.0},
    "poll": None,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3, help="trials per phase and signal")
    parser.add_argument("--grace", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=5.0, help="--timeout T for the fault table")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from azure.storage.blob import BlobServiceClient

    from cicd_tools.sandbox.identity.identity import SandboxCredential
    from cicd_tools.sandbox.runtime import Sandbox

    root_dir = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="cicd-bench-sig-") as root, Sandbox(Path(root)) as sb:
        env = {**os.environ, **sb.env(), "PYTHONPATH": str(root_dir)}
        os.environ["REQUESTS_CA_BUNDLE"] = str(sb.ca_bundle)
        private = BlobServiceClient(sb.private_blob_endpoint, credential=SandboxCredential(secret=sb.secret))
        if not private.get_container_client("ml-globals").exists():
            private.create_container("ml-globals")

        def clean() -> bool:
            acct = sb.control.account()
            ips = [r["value"] for r in acct["properties"]["networkAcls"]["ipRules"]]
            return ips == [PERMANENT] and not any(t.startswith("cicd-fw-") for t in acct["tags"])

        print(f"signal -> exit of `firewall open`, {args.trials} trials per phase and signal, grace {args.grace:g} s")
        print(f"{'phase':<18} {'signal':<8} {'exit 130':>9} {'max s to exit':>14} {'median':>7}"
              f" {'left after grace':>17}")
        for phase, fault in PHASES.items():
            for sig in (signal.SIGTERM, signal.SIGINT):
                exits, times, left = 0, [], 0
                for trial in range(args.trials):
                    sb.control.reset()
                    sb.control.set_propagation_delay(60.0 if fault is None else 0.3)
                    sb.control.set_account_properties(network_acls={"ipRules": [{"value": PERMANENT,
                                                                                 "action": "Allow"}]})
                    if fault is not None:
                        sb.control.add_fault(count=1, **fault)
                    state = Path(root) / f"state-{phase}-{sig.name}-{trial}.json"
                    argv = [sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "firewall", "open",
                            "--timeout", "60s", "--grace", f"{args.grace:g}s", "--lease-id",
                            f"s-{phase}-{trial}", "--state-file", str(state)]
                    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    end = time.monotonic() + 60
                    while time.monotonic() < end:
                        if fault is not None and any(f.hits >= 1 for f in sb.control.faults()):
                            break
                        if fault is None and any(r.get("status") == 403 for r in sb.control.requests("blob")):
                            break
                        time.sleep(0.05)
                    sent = time.monotonic()
                    proc.send_signal(sig)
                    code = proc.wait(timeout=60)
                    times.append(time.monotonic() - sent)
                    exits += code == 130
                    if phase == "patch-in-flight":
                        while not any(r["method"] == "PATCH" for r in sb.control.requests("arm")):
                            time.sleep(0.1)
                    sb.control.clear_faults()
                    deadline = time.monotonic() + args.grace + 5
                    while not clean() and time.monotonic() < deadline:
                        time.sleep(0.2)
                    left += 0 if clean() else 1
                times.sort()
                print(f"{phase:<18} {sig.name:<8} {exits:>4}/{args.trials:<4} {max(times):>14.2f}"
                      f" {times[len(times) // 2]:>7.2f} {left:>17}", flush=True)
        print(f"\n`firewall open --timeout {args.timeout:g}s` under faults (wall time includes interpreter start-up)")
        print(f"{'fault':<20} {'exit':>5} {'wall s':>7} {'wall - T':>9}  last status named")
        for name, fault in TIMEOUT_FAULTS.items():
            for trial in range(args.trials):
                sb.control.reset()
                sb.control.set_propagation_delay(0.3)
                sb.control.add_fault(**fault)
                argv = [sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "firewall", "open", "--timeout",
                        f"{args.timeout:g}s", "--grace", f"{args.grace:g}s", "--lease-id", f"t-{name}-{trial}",
                        "--state-file", str(Path(root) / f"t-{name}-{trial}.json")]
                started = time.monotonic()
                done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
                wall = time.monotonic() - started
                seen = next((ln.split("last seen: ", 1)[1] for ln in done.stderr.splitlines() if "last seen: " in ln),
                            "-")
                print(f"{name:<20} {done.returncode:>5} {wall:>7.2f} {wall - args.timeout:>9.2f}  {seen[:70]}",
                      flush=True)
    return 0


TIMEOUT_FAULTS: dict[str, dict[str, Any]] = {
    "slow-patch-30s": {"service": "arm", "method": "PATCH", "kind": "delay", "delay": 30.0, "count": 1},
    "slow-probe-30s": {"service": "blob", "kind": "delay", "delay": 30.0, "count": None},
    "503-forever": {"service": "blob", "status": 503, "count": None},
    "429-retry-after-30": {"service": "blob", "status": 429, "retry_after": 30.0, "count": None},
}


if __name__ == "__main__":
    raise SystemExit(main())
