"""Firewall open: time from `open` to proven reachability, beside the propagation delay D and a fixed 30 s sleep.

Runs the in-process sandbox (real Azurite, the ARM emulator, the blob firewall) with a propagation delay
D per run, and times ``open_rule`` with its data-plane poll (read-merge-PATCH-verify, settle, poll until
the container lists) followed by ``close_rule``. The fixed-sleep practice it replaces is "PATCH, then
sleep 30 s and hope". Prints medians and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

FIXED_SLEEP = 30.0
CONTAINER = "ml-globals"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--delay", type=float, action="append", help="propagation delay D in seconds (repeatable; default 2 and 5)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per delay (median reported)")
    args = parser.parse_args()
    delays: list[float] = args.delay or [2.0, 5.0]
    logging.basicConfig(level=logging.WARNING)

    from azure.mgmt.storage import StorageManagementClient
    from azure.storage.blob import BlobServiceClient

    from cicd_tools.sandbox.identity import SandboxCredential
    from cicd_tools.sandbox.runtime import Sandbox
    from cicd_tools.storage.firewall import AccountRef, close_rule, open_rule
    from cicd_tools.storage.smoke import make_list_probe

    with tempfile.TemporaryDirectory(prefix="cicd-bench-fw-") as root, Sandbox(Path(root)) as sb:
        os.environ["REQUESTS_CA_BUNDLE"] = str(sb.ca_bundle)  # azure-core's requests transport reads it
        credential = SandboxCredential()
        client = StorageManagementClient(
            credential, sb.subscription_id, base_url=sb.arm_endpoint, credential_scopes=[sb.arm_endpoint + "/.default"]
        )
        account = AccountRef(sb.subscription_id, sb.resource_group, sb.storage_account)
        private = BlobServiceClient(sb.private_blob_endpoint, credential=credential).get_container_client(CONTAINER)
        if not private.exists():
            private.create_container()
        probe = make_list_probe(BlobServiceClient(sb.blob_endpoint, credential=credential), CONTAINER)
        print(f"firewall open -> reachable, {args.runs} runs per D (Python {sys.version.split()[0]}, sandbox)")
        print(
            f"{'D s':>6} {'open median s':>14} {'min':>6} {'max':>6} {'reach after s':>14} {'ours/D':>7}"
            f" {'ours/30s':>9} {'close s':>8}"
        )
        for delay in delays:
            sb.control.set_propagation_delay(delay)
            opens, reaches, closes = [], [], []
            for run in range(args.runs):
                lease = f"bench-{int(delay * 10)}-{run}"
                started = time.perf_counter()
                result = open_rule(client, account, sb.agent_ip, lease, 600, probe=probe)
                opens.append(time.perf_counter() - started)
                reaches.append(result.reachable_after or 0.0)
                started = time.perf_counter()
                close_rule(client, account, lease)
                closes.append(time.perf_counter() - started)
            ours = statistics.median(opens)
            print(
                f"{delay:>6.1f} {ours:>14.2f} {min(opens):>6.2f} {max(opens):>6.2f}"
                f" {statistics.median(reaches):>14.2f} {ours / delay:>7.2f} {ours / FIXED_SLEEP:>9.2f}"
                f" {statistics.median(closes):>8.2f}"
            )
        print("ours/D: overhead over the propagation itself (poll granularity, ARM round trips, settle window);")
        print("ours/30s: our open against the fixed 30 s sleep (which is also wrong whenever D > 30 s).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
