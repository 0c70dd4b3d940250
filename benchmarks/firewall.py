"""Firewall open: time from `open` to proven reachability, beside the propagation delay D, the flap window F
and a fixed 30 s sleep; and whether "reachable" was ever false.

Runs the in-process sandbox (real Azurite, the ARM emulator, the blob firewall) with a propagation delay D
and a flap window F (after D, each request is refused with probability 1/2 for F seconds) per run, and
times ``open_rule`` with its data-plane poll (read-merge-PATCH-verify, settle, poll until the container
lists 3 times in a row), then runs the smoke test at once, first without and then with its 403 retry, and
``close_rule``. "false reachable" counts runs where open said reachable and the retrying smoke still
failed; "smoke 1st try failed" counts runs where a smoke without retry would have failed (the flap is
still going on). The fixed-sleep practice it replaces is "PATCH, then sleep 30 s and hope". Prints
medians and ratios; asserts nothing.
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
    parser.add_argument("--flap", type=float, action="append", help="flap window F in seconds (default 0 and 3)")
    parser.add_argument("--runs", type=int, default=3, help="runs per (D, F) (median reported)")
    args = parser.parse_args()
    delays: list[float] = args.delay or [2.0, 5.0]
    flaps: list[float] = args.flap or [0.0, 3.0]
    logging.basicConfig(level=logging.WARNING)

    from azure.mgmt.storage import StorageManagementClient
    from azure.storage.blob import BlobServiceClient

    from cicd_tools.sandbox.identity.identity import SandboxCredential
    from cicd_tools.sandbox.runtime import Sandbox
    from cicd_tools.storage.firewall import AccountRef, close_rule, open_rule
    from cicd_tools.storage.smoke import make_list_probe, smoke_test

    with tempfile.TemporaryDirectory(prefix="cicd-bench-fw-") as root, Sandbox(Path(root)) as sb:
        os.environ["REQUESTS_CA_BUNDLE"] = str(sb.ca_bundle)  # azure-core's requests transport reads it
        credential = SandboxCredential(secret=sb.secret)
        client = StorageManagementClient(
            credential, sb.subscription_id, base_url=sb.arm_endpoint, credential_scopes=[sb.arm_endpoint + "/.default"]
        )
        account = AccountRef(sb.subscription_id, sb.resource_group, sb.storage_account)
        private = BlobServiceClient(sb.private_blob_endpoint, credential=credential).get_container_client(CONTAINER)
        if not private.exists():
            private.create_container()
        probe = make_list_probe(BlobServiceClient(sb.blob_endpoint, credential=credential), CONTAINER)
        agent = BlobServiceClient(sb.blob_endpoint, credential=credential, retry_total=0)
        print(f"firewall open -> reachable, {args.runs} runs per (D, F) (Python {sys.version.split()[0]}, sandbox)")
        print(
            f"{'D s':>5} {'F s':>5} {'open median s':>14} {'min':>6} {'max':>6} {'reach after s':>14} {'ours/D':>7}"
            f" {'ours/30s':>9} {'smoke 1st try failed':>21} {'false reachable':>16} {'close s':>8}"
        )
        for delay in delays:
            for flap in flaps:
                sb.control.set_propagation(delay=delay, flap_window=flap, flap_refuse_ratio=0.5)
                opens, reaches, closes, first_fail, false_reach = [], [], [], 0, 0
                for run in range(args.runs):
                    lease = f"bench-{int(delay * 10)}-{int(flap * 10)}-{run}"
                    started = time.perf_counter()
                    result = open_rule(client, account, sb.agent_ip, lease, 600, probe=probe, grace=0)
                    opens.append(time.perf_counter() - started)
                    reaches.append(result.reachable_after or 0.0)
                    first_fail += 0 if smoke_test(agent.get_container_client(CONTAINER)).usable else 1
                    retried = smoke_test(agent.get_container_client(CONTAINER), denied_budget=30.0)
                    false_reach += 0 if retried.usable else 1
                    started = time.perf_counter()
                    close_rule(client, account, lease, grace=0)
                    closes.append(time.perf_counter() - started)
                ours = statistics.median(opens)
                print(
                    f"{delay:>5.1f} {flap:>5.1f} {ours:>14.2f} {min(opens):>6.2f} {max(opens):>6.2f}"
                    f" {statistics.median(reaches):>14.2f} {ours / delay:>7.2f} {ours / FIXED_SLEEP:>9.2f}"
                    f" {first_fail:>21} {false_reach:>16} {statistics.median(closes):>8.2f}",
                    flush=True,
                )
        print("ours/D: overhead over the propagation itself (poll granularity, 3 answers in a row, ARM round trips,")
        print("settle window); ours/30s: our open against the fixed 30 s sleep (also wrong whenever D + F > 30 s).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
