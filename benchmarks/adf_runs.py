"""`adf run --wait`: end-detection latency and ARM calls per minute for runs of several lengths.

Runs the in-process sandbox's Data Factory: a pipeline whose only activity is a Wait of L seconds, started
with createRun through azure-mgmt-datafactory, then ``wait_for_run`` (polls start at 1 s and grow by half up
to ``--poll``), with and without live progress. End-detection latency = when the wait saw the run finished
minus the run's ``runEnd``. Compared with a fixed 15 s poll (the usual "sleep 15; get" loop). Prints numbers
and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _wait_pipeline(seconds: int) -> dict[str, Any]:
    return {"properties": {"activities": [
        {"name": "Hold", "type": "Wait", "typeProperties": {"waitTimeInSeconds": seconds}}]}}


def _fixed_poll(api: Any, ref: Any, run_id: str, interval: float) -> tuple[dict[str, Any], int]:
    calls = 0
    while True:
        calls += 1
        run: dict[str, Any] = api.get_run(ref, run_id)
        if run.get("status") in ("Succeeded", "Failed", "Cancelled"):
            return run, calls
        time.sleep(interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--length", type=int, action="append", help="run length in seconds (default 2, 10, 40)")
    parser.add_argument("--poll", type=float, default=15.0, help="longest poll interval (default 15 s)")
    args = parser.parse_args()
    lengths: list[int] = args.length or [2, 10, 40]
    logging.basicConfig(level=logging.WARNING)

    from azure.mgmt.datafactory import DataFactoryManagementClient

    from cicd_tools.adf.client import ArmCalls, FactoryRef, MgmtDataFactory, parse_time
    from cicd_tools.adf.wait import wait_for_run
    from cicd_tools.sandbox.identity.identity import SandboxCredential
    from cicd_tools.sandbox.runtime import Sandbox

    with tempfile.TemporaryDirectory(prefix="cicd-bench-adf-") as root, Sandbox(Path(root)) as sb:
        os.environ["REQUESTS_CA_BUNDLE"] = str(sb.ca_bundle)
        client = DataFactoryManagementClient(SandboxCredential(secret=sb.secret), sb.subscription_id,
                                             base_url=sb.arm_endpoint,
                                             credential_scopes=[sb.arm_endpoint + "/.default"])
        api = MgmtDataFactory(client)
        ref = FactoryRef(sb.subscription_id, sb.resource_group, sb.layout.factory)
        for length in lengths:
            api.put_resource(ref, "pipelines", f"pl_wait_{length}", _wait_pipeline(length))
        print(f"adf run --wait against the sandbox (Python {sys.version.split()[0]}), poll up to {args.poll:g}s")
        print(f"{'run s':>6} {'mode':<16} {'detect s':>9} {'ARM calls':>10} {'calls/min':>10} {'latency/fixed':>14}")
        for length in lengths:
            rows: dict[str, tuple[float, int, float]] = {}
            for mode in ("backoff", "backoff+progress", "fixed 15s"):
                run_id = api.create_run(ref, f"pl_wait_{length}", {})
                started = time.monotonic()
                if mode == "fixed 15s":
                    run, count = _fixed_poll(api, ref, run_id, 15.0)
                else:
                    calls = ArmCalls()
                    progress = (lambda item: None) if mode.endswith("progress") else None
                    run = wait_for_run(api, calls, ref, run_id, timeout=3600, poll=args.poll,
                                       progress=progress).run
                    count = calls.calls + 1  # + createRun
                seen_at = datetime.now(UTC)  # the sandbox stamps runEnd with this same clock
                elapsed = time.monotonic() - started
                end = parse_time(run.get("runEnd"))
                assert end is not None
                latency = max(0.0, (seen_at - end).total_seconds())
                rows[mode] = (latency, count, count / max(elapsed, 1e-9) * 60)
            fixed = rows["fixed 15s"][0]
            for mode, (latency, count, per_min) in rows.items():
                ratio = f"{latency / fixed:.2f}" if fixed > 0 else "n/a"
                print(f"{length:>6} {mode:<16} {latency:>9.2f} {count:>10} {per_min:>10.1f} {ratio:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
