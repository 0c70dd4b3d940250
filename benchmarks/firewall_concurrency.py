"""Firewall concurrency matrix: agents x competitor PATCH delay x rounds, against the in-process sandbox.

Each round runs N agents (own IP, origin, lease) that open a rule (probe, 3 answers in a row), hold it with a
``RuleGuard`` for a few seconds, and close it (release watch of ``--grace`` s, default: the competitor's delay
+ 3 s). Meanwhile a *competitor* does what a naive tool does (``az storage account network-rule add/remove``):
read the account, then PATCH the whole rule list and tag map back with its own rule toggled; the sandbox holds
each competitor PATCH for D seconds (a ``delay`` fault), so it lands stale. ``--competitor once`` (default, the
issue's case): one such PATCH read as the agents start opening, one read just before the first agent closes.
``--competitor toggle`` (stress): it keeps reading and PATCHing back to back for the whole round. A sampler reads the
account every 0.1 s. Printed per D: agent-runs that lost their rule (or tag) while held, the longest such loss,
guard repairs, rules left after close + grace, pre-existing rules removed, and our open / close times.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTAINER = "ml-globals"
PERMANENT = "20.30.40.50"


@dataclass
class Agent:
    index: int
    ip: str
    endpoint: str = ""
    opened_at: float | None = None
    closing_at: float | None = None
    open_s: float = 0.0
    close_s: float = 0.0
    repairs: int = 0
    re_removed: int = 0
    error: str | None = None


@dataclass
class Sample:
    at: float  # the read began here ...
    rules: set[str]
    tags: set[str] = field(default_factory=set)
    ended: float = 0.0  # ... and its answer came back here: the state is from somewhere in between


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--delay", type=float, action="append", help="competitor PATCH delay D (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hold", type=float, default=4.0, help="seconds each agent holds its rule")
    parser.add_argument("--guard-interval", type=float, default=1.0)
    parser.add_argument("--grace", type=float, default=None, help="release watch (default D + 3 s)")
    parser.add_argument("--competitor", choices=("once", "toggle"), default="once")
    args = parser.parse_args()
    delays: list[float] = args.delay or [0.0, 0.5, 2.0, 4.0, 10.0]
    logging.basicConfig(level=logging.ERROR)

    from azure.mgmt.storage import StorageManagementClient
    from azure.storage.blob import BlobServiceClient

    from cicd_tools.sandbox.identity.identity import SandboxCredential
    from cicd_tools.sandbox.runtime import Sandbox
    from cicd_tools.storage.arm import accounts_api
    from cicd_tools.storage.firewall import AccountRef, RuleGuard, close_rule, open_rule
    from cicd_tools.storage.lease_tags import Lease, parse_iso
    from cicd_tools.storage.smoke import make_list_probe

    with tempfile.TemporaryDirectory(prefix="cicd-bench-fwc-") as root, Sandbox(Path(root)) as sb:
        os.environ["REQUESTS_CA_BUNDLE"] = str(sb.ca_bundle)
        cred = SandboxCredential(secret=sb.secret)

        def client() -> Any:
            return StorageManagementClient(
                cred, sb.subscription_id, base_url=sb.arm_endpoint, credential_scopes=[sb.arm_endpoint + "/.default"]
            )

        ref = AccountRef(sb.subscription_id, sb.resource_group, sb.storage_account)
        private = BlobServiceClient(sb.private_blob_endpoint, credential=cred)
        if not private.get_container_client(CONTAINER).exists():
            private.create_container(CONTAINER)
        agents = [Agent(i, f"52.151.40.{i + 1}") for i in range(args.agents)]
        for a in agents:
            a.endpoint = sb.control.add_origin(a.ip, account=sb.storage_account)
        sb.control.set_propagation_delay(0.5)

        def run_round(delay: float, rnd: int) -> dict[str, Any]:
            sb.control.set_account_properties(network_acls={"ipRules": [{"value": PERMANENT, "action": "Allow"}]},
                                              tags={"owner": "mlops"})
            sb.control.clear_faults()
            if delay > 0:
                sb.control.add_fault(service="arm", method="PATCH", path="competitor=1", kind="delay", delay=delay,
                                     count=None)
            grace = args.grace if args.grace is not None else delay + 3.0
            samples: list[Sample] = []
            stop = threading.Event()
            barrier = threading.Barrier(len(agents) + 1)

            def sampler() -> None:
                while not stop.is_set():
                    began = time.monotonic()
                    acct = sb.control.account()
                    samples.append(Sample(began, {r["value"] for r in acct["properties"]["networkAcls"][
                        "ipRules"]}, set(acct["tags"]), time.monotonic()))
                    time.sleep(0.1)

            def competitor() -> None:
                mgmt, present = client(), False

                def stale_write() -> None:
                    nonlocal present
                    raw = mgmt.storage_accounts.get_properties(sb.resource_group, sb.storage_account,
                                                               cls=lambda r, _d, _h: r.http_response.json())
                    acls = raw["properties"]["networkAcls"]
                    others = [r for r in acls["ipRules"] if r["value"] != "52.151.99.99"]
                    acls["ipRules"] = others if present else [*others, {"value": "52.151.99.99", "action": "Allow"}]
                    present = not present
                    body = json.dumps({"properties": {"networkAcls": acls}, "tags": raw["tags"]}).encode()
                    mgmt.storage_accounts.update(sb.resource_group, sb.storage_account, body,
                                                 content_type="application/json", params={"competitor": "1"})

                if args.competitor == "toggle":
                    while not stop.is_set():
                        stale_write()
                        time.sleep(0.3)
                    return
                time.sleep(0.3)  # the agents have read the account and are writing: our read misses most rules
                stale_write()
                while not stop.is_set() and not any(a.closing_at for a in agents):
                    time.sleep(0.05)
                if not stop.is_set():
                    stale_write()  # read while the rules are held, lands after (some of) the closes

            def agent(a: Agent) -> None:
                try:
                    mgmt, lease_id = client(), f"b{rnd}-{a.index}"
                    probe = make_list_probe(BlobServiceClient(a.endpoint, credential=cred, retry_total=0), CONTAINER)
                    barrier.wait(timeout=60)
                    started = time.monotonic()
                    opened = open_rule(mgmt, ref, a.ip, lease_id, 900, probe=probe, timeout=120, grace=grace,
                                       renew_for=300)
                    a.opened_at = time.monotonic()
                    a.open_s = a.opened_at - started
                    lease = Lease(lease_id, a.ip, parse_iso(opened.expires_at or ""), opened.preexisting,
                                  parse_iso(opened.renew_by) if opened.renew_by else None)
                    guard = RuleGuard(accounts_api(mgmt), ref, lease, interval=args.guard_interval).start()
                    time.sleep(args.hold + 0.2 * a.index)
                    a.closing_at = time.monotonic()  # held until close begins (it stops the guard first)
                    guard.stop()
                    a.repairs = guard.repairs
                    closed = close_rule(mgmt, ref, lease_id, fallback=lease, timeout=120, grace=grace)
                    a.close_s = time.monotonic() - a.closing_at
                    a.re_removed = closed.re_removed
                except BaseException as exc:  # reported, not raised: one failed agent is a data point
                    a.error = f"{type(exc).__name__}: {exc}"

            for a in agents:
                a.opened_at = a.closing_at = None
                a.error = None
            threads = [threading.Thread(target=agent, args=(a,)) for a in agents]
            watch = threading.Thread(target=sampler)
            rival = threading.Thread(target=competitor)
            for t in threads:
                t.start()
            watch.start()
            rival.start()
            barrier.wait(timeout=60)
            for t in threads:
                t.join(timeout=600)
            stop.set()
            rival.join(timeout=60)  # its last (held) PATCH lands before we look
            time.sleep(0.3)
            watch.join(timeout=30)
            final = sb.control.account()
            final_rules = {r["value"] for r in final["properties"]["networkAcls"]["ipRules"]}
            lost_runs, longest = 0, 0.0
            for a in agents:
                if a.opened_at is None or a.closing_at is None:
                    continue
                held = [s for s in samples if a.opened_at <= s.at and s.ended <= a.closing_at]
                missing = [s for s in held if a.ip not in s.rules or f"cicd-fw-b{rnd}-{a.index}" not in s.tags]
                if missing:
                    lost_runs += 1
                    run_start, prev = None, None
                    for s in held:
                        gone = s in missing
                        if gone and run_start is None:
                            run_start = s.at
                        if not gone and run_start is not None:
                            longest = max(longest, s.at - run_start)
                            run_start = None
                        prev = s
                    if run_start is not None and prev is not None:
                        longest = max(longest, prev.at - run_start)
            return {
                "lost_runs": lost_runs,
                "longest_loss": longest,
                "repairs": sum(a.repairs for a in agents),
                "re_removed": sum(a.re_removed for a in agents),
                "left": len([a for a in agents if a.ip in final_rules]),
                "tags_left": len([t for t in final["tags"] if t.startswith("cicd-fw-")]),
                "preexisting_removed": int(PERMANENT not in final_rules or any(PERMANENT not in s.rules
                                                                               for s in samples)),
                "errors": [a.error for a in agents if a.error],
                "open": [a.open_s for a in agents if not a.error],
                "close": [a.close_s for a in agents if not a.error],
            }

        print(f"firewall concurrency ({args.competitor} competitor): {args.agents} agents x {args.rounds} rounds per"
              f" competitor delay D; guard every"
              f" {args.guard_interval:g} s; grace {'D + 3 s' if args.grace is None else f'{args.grace:g} s'};"
              f" Python {sys.version.split()[0]}, sandbox")
        print(f"{'D s':>5} {'runs':>5} {'lost while held':>16} {'longest loss s':>15} {'repairs':>8}"
              f" {'re-removed':>11} {'left after close':>17} {'tags left':>10} {'pre-existing removed':>21}"
              f" {'open med s':>11} {'close med s':>12} {'errors':>7}")
        for delay in delays:
            results = [run_round(delay, r) for r in range(args.rounds)]
            runs = args.agents * args.rounds
            opens = [x for r in results for x in r["open"]] or [0.0]
            closes = [x for r in results for x in r["close"]] or [0.0]
            errors = [e for r in results for e in r["errors"]]
            print(f"{delay:>5.1f} {runs:>5} {sum(r['lost_runs'] for r in results):>16}"
                  f" {max(r['longest_loss'] for r in results):>15.2f} {sum(r['repairs'] for r in results):>8}"
                  f" {sum(r['re_removed'] for r in results):>11} {sum(r['left'] for r in results):>17}"
                  f" {sum(r['tags_left'] for r in results):>10} {sum(r['preexisting_removed'] for r in results):>21}"
                  f" {statistics.median(opens):>11.2f} {statistics.median(closes):>12.2f} {len(errors):>7}",
                  flush=True)
            for e in errors[:3]:
                print(f"      error: {e[:200]}")
        print("lost while held: agent-runs whose rule or lease tag was missing in a sample while held (each stale")
        print("competitor PATCH replaces the whole list); the guard repairs within one interval + one PATCH.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
