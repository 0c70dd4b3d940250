"""The firewall under slow competitors, cancellation, flapping propagation, faults and RP validation, against the
sandbox with the real azure-mgmt-storage / azure-storage-blob / azure-identity code (issue 9's acceptance)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.storage import StorageManagementClient
from azure.storage.blob import BlobServiceClient

from cicd_tools.cli.main import main
from cicd_tools.sandbox.identity.identity import SandboxCredential
from cicd_tools.sandbox.runtime import Sandbox
from cicd_tools.storage.firewall import AccountRef, RuleGuard, close_rule, open_rule
from cicd_tools.storage.lease_tags import Lease, parse_iso
from cicd_tools.storage.smoke import make_list_probe, smoke_test
from cicd_tools.support.errors import AzureError

CONTAINER = "ml-globals"
PERMANENT = "20.30.40.50"
ROOT = Path(__file__).resolve().parents[2]


def mgmt(sb: Sandbox) -> StorageManagementClient:
    return StorageManagementClient(
        SandboxCredential(),
        sb.subscription_id,
        base_url=sb.arm_endpoint,
        credential_scopes=[sb.arm_endpoint + "/.default"],
    )


def ref(sb: Sandbox, account: str | None = None) -> AccountRef:
    return AccountRef(sb.subscription_id, sb.resource_group, account or sb.storage_account)


def blobs(endpoint: str) -> BlobServiceClient:
    return BlobServiceClient(endpoint, credential=SandboxCredential(), retry_total=0)


def prepare(sb: Sandbox, delay: float = 0.3) -> None:
    sb.control.set_propagation_delay(delay)
    service = blobs(sb.private_blob_endpoint)
    if not service.get_container_client(CONTAINER).exists():
        service.create_container(CONTAINER)
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": PERMANENT, "action": "Allow"}]})


def rules(sb: Sandbox, account: str | None = None) -> list[str]:
    return [r["value"] for r in sb.control.account(account)["properties"]["networkAcls"]["ipRules"]]


def lease_tags(sb: Sandbox) -> dict[str, str]:
    return {k: v for k, v in sb.control.account()["tags"].items() if k.startswith("cicd-fw-")}


def eventually(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``condition`` until it holds (a bound against hangs, not a timing assertion)."""
    end = time.monotonic() + within
    while not condition():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.2)


def clean(sb: Sandbox) -> bool:
    return rules(sb) == [PERMANENT] and lease_tags(sb) == {}


def held_patch_landed(sb: Sandbox) -> bool:
    """The server finished the PATCH it held (requests are logged once answered, the answer lost or not)."""
    return any(r["method"] == "PATCH" for r in sb.control.requests("arm"))


# --- Storage PATCH fidelity ------------------------------------------------------------------------


def test_open_on_an_account_with_a_defender_scanner_rule_carries_that_rule_back_and_works(
    sandbox_env: Sandbox,
) -> None:
    sb = sandbox_env
    account = sb.layout.defender_storage_account
    before = sb.control.account(account)["properties"]["networkAcls"]["resourceAccessRules"]
    assert before and "Microsoft.Security/datascanners" in before[0]["resourceId"]
    opened = open_rule(mgmt(sb), ref(sb, account), sb.agent_ip, "it-defender", 600, grace=0)
    assert opened.rule_added and sb.agent_ip in rules(sb, account)
    assert sb.control.account(account)["properties"]["networkAcls"]["resourceAccessRules"] == before
    close_rule(mgmt(sb), ref(sb, account), "it-defender", grace=0)
    assert rules(sb, account) == []


def test_a_carried_back_rule_the_rp_refuses_fails_with_its_400_explained_and_adds_nothing(sandbox_env: Sandbox) -> None:
    sb = sandbox_env
    account = sb.layout.defender_storage_account
    sb.control.refuse_resource_access_types(["Microsoft.Security/datascanners"])  # the field regression
    with pytest.raises(AzureError) as info:
        open_rule(mgmt(sb), ref(sb, account), sb.agent_ip, "it-refused", 600, grace=0)
    assert info.value.code == "InvalidValuesForRequestParameters"
    assert "resourceAccessRules" in info.value.message and "StorageDataScanner" in info.value.hint
    assert rules(sb, account) == []


def test_the_rp_refuses_malformed_resource_access_and_vnet_rules_with_400(sandbox_env: Sandbox) -> None:
    from azure.core.exceptions import HttpResponseError

    sb = sandbox_env
    ops = mgmt(sb).storage_accounts
    for acls, field in (
        ({"defaultAction": "Deny", "resourceAccessRules": [{"tenantId": "nope", "resourceId": "/x"}]}, "tenantId"),
        ({"defaultAction": "Deny", "virtualNetworkRules": [{"id": "/subscriptions/s/vnet"}]}, "virtualNetworkRules"),
    ):
        body = json.dumps({"properties": {"networkAcls": acls}}).encode()
        with pytest.raises(HttpResponseError) as info:
            ops.update(sb.resource_group, sb.storage_account, body, content_type="application/json")
        assert info.value.status_code == 400 and field in str(info.value)


# --- a slow competitor: defended while held, watched after close -----------------------------------


def stale_patch(sb: Sandbox, snapshot: dict[str, Any], extra_ip: str) -> None:
    """A competitor's PATCH computed from ``snapshot`` (no ETag), marked so a server-side fault can hold it."""
    acls = snapshot["properties"]["networkAcls"]
    acls["ipRules"] = [*acls["ipRules"], {"value": extra_ip, "action": "Allow"}]
    body = json.dumps({"properties": {"networkAcls": acls}, "tags": snapshot["tags"]}).encode()
    mgmt(sb).storage_accounts.update(
        sb.resource_group, sb.storage_account, body, content_type="application/json", params={"competitor": "1"}
    )


def read(sb: Sandbox) -> dict[str, Any]:
    raw = mgmt(sb).storage_accounts.get_properties(
        sb.resource_group, sb.storage_account, cls=lambda resp, _d, _h: resp.http_response.json()
    )
    assert isinstance(raw, dict)
    return raw


def test_a_competitor_patch_held_two_seconds_is_repaired_while_held_and_removed_again_after_close(
    sandbox_env: Sandbox,
) -> None:
    sb = sandbox_env
    prepare(sb)
    competitor = "52.151.30.1"
    sb.control.add_fault(service="arm", path="competitor=1", method="PATCH", kind="delay", delay=2.0, count=None)
    # While held: the competitor read before our open; its PATCH lands after we verified.
    snapshot = read(sb)
    opened = open_rule(mgmt(sb), ref(sb), sb.agent_ip, "it-held", 600, grace=0)
    lease = Lease("it-held", sb.agent_ip, parse_iso(opened.expires_at or ""), False)
    guard = RuleGuard(_api(sb), ref(sb), lease, interval=0.3).start()
    try:
        stale_patch(sb, snapshot, competitor)  # lands 2 s later, replacing the whole list and the tag map
        eventually(lambda: sb.agent_ip in rules(sb) and "cicd-fw-it-held" in lease_tags(sb), 10, "guard repair")
        assert guard.repairs >= 1 and competitor in rules(sb)
    finally:
        guard.stop()
    # After close: a competitor that read while we held the rule lands its stale PATCH after our removal.
    snapshot = read(sb)
    late = threading.Thread(target=stale_patch, args=(sb, snapshot, "52.151.30.2"))
    late.start()
    eventually(lambda: any(f.hits >= 2 for f in sb.control.faults()), 10, "competitor PATCH in flight")
    closed = close_rule(mgmt(sb), ref(sb), "it-held", fallback=lease, grace=4.0)
    late.join(timeout=30)
    assert closed.re_removed >= 1
    assert sb.agent_ip not in rules(sb) and lease_tags(sb) == {}
    assert PERMANENT in rules(sb) and "52.151.30.2" in rules(sb)


def _api(sb: Sandbox) -> Any:
    from cicd_tools.storage.arm import accounts_api

    return accounts_api(mgmt(sb))


# --- cancellation at every phase of `firewall open` -------------------------------------------------


def _wait_hit(sb: Sandbox) -> Callable[[], bool]:
    return lambda: any(f.hits >= 1 for f in sb.control.faults())


def _blob_refused(sb: Sandbox) -> Callable[[], bool]:
    return lambda: any(r.get("status") == 403 for r in sb.control.requests("blob"))


PHASES: dict[str, tuple[dict[str, Any] | None, str]] = {
    # phase: (fault armed before the run, or None: a 60 s propagation delay keeps the poll going)
    "ip-echo": ({"service": "echo", "kind": "delay", "delay": 15.0}, "SIGTERM"),
    "arm-token-fetch": ({"service": "identity", "path": r"^/identity/[^?]*\?(?!.*storage)", "kind": "delay",
                         "delay": 15.0}, "SIGINT"),
    "arm-read": ({"service": "arm", "method": "GET", "path": "storageAccounts", "kind": "delay", "delay": 15.0},
                 "SIGTERM"),
    "patch-in-flight": ({"service": "arm", "method": "PATCH", "kind": "delay", "delay": 3.0}, "SIGTERM"),
    "probe-token-fetch": ({"service": "identity", "path": "storage", "kind": "delay", "delay": 15.0}, "SIGINT"),
    "probe": ({"service": "blob", "kind": "delay", "delay": 15.0}, "SIGTERM"),
    "poll": (None, "SIGINT"),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_signal_at_every_phase_of_open_exits_130_and_leaves_no_rule(
    sandbox_env: Sandbox, tmp_path: Path, phase: str
) -> None:
    sb = sandbox_env
    fault, sig = PHASES[phase]
    prepare(sb, delay=60.0 if fault is None else 0.3)
    if fault is not None:
        sb.control.add_fault(count=1, **fault)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "firewall", "open", "--timeout", "60s",
            "--grace", "8s", "--lease-id", f"sig-{phase}", "--state-file", str(tmp_path / "state.json")]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        eventually(_wait_hit(sb) if fault is not None else _blob_refused(sb), 60, f"reaching phase {phase}")
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=30)  # a hang guard; the benchmark measures signal-to-exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert f"received signal {sig}" in err or "interrupted" in err
    if phase == "patch-in-flight":  # our PATCH lands after we exited: the detached watcher must remove it
        eventually(lambda: held_patch_landed(sb), 30, "the held PATCH landed")
    sb.control.clear_faults()
    eventually(lambda: clean(sb), 30, "no rule and no lease tag after the grace window")


# --- --timeout is a bound, and names what it saw ----------------------------------------------------

TIMEOUT_FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "slow-patch": ({"service": "arm", "method": "PATCH", "kind": "delay", "delay": 5.0, "count": 1}, "no answer"),
    "slow-probe": ({"service": "blob", "kind": "delay", "delay": 10.0, "count": None}, "no answer from the data plane"),
    "503-forever": ({"service": "blob", "status": 503, "count": None}, "503"),
    "429-retry-after-30": ({"service": "blob", "status": 429, "retry_after": 30.0, "count": None}, "429"),
}


@pytest.mark.parametrize("case", list(TIMEOUT_FAULTS))
def test_open_with_a_timeout_gives_up_naming_the_status_it_last_saw_and_leaves_no_rule(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    sb = sandbox_env
    prepare(sb)
    fault, named = TIMEOUT_FAULTS[case]
    sb.control.add_fault(**fault)
    argv = ["--ci", "plain", "firewall", "open", "--timeout", "3s", "--grace", "8s", "--lease-id", f"to-{case}",
            "--state-file", str(tmp_path / "state.json")]
    assert main(argv) == 6
    err = capsys.readouterr().err
    assert "gave up after" in err and named in err, err
    assert "AuthorizationFailure" not in err  # never the firewall guess when the data plane said something else
    if case == "slow-patch":  # our PATCH lands after we gave up: the detached watcher must remove it
        eventually(lambda: held_patch_landed(sb), 30, "the held PATCH landed")
    sb.control.clear_faults()
    eventually(lambda: clean(sb), 30, "no rule after the grace window")


# --- flapping propagation ---------------------------------------------------------------------------


def test_with_flapping_propagation_open_then_smoke_never_reports_a_false_reachable(sandbox_env: Sandbox) -> None:
    sb = sandbox_env
    prepare(sb, delay=0.3)
    sb.control.set_propagation(delay=0.3, flap_window=1.0, flap_refuse_ratio=0.5, seed=9)
    probe = make_list_probe(blobs(sb.blob_endpoint), CONTAINER)
    false_reachable = 0
    for trial in range(4):
        lease = f"flap-{trial}"
        open_rule(mgmt(sb), ref(sb), sb.agent_ip, lease, 600, probe=probe, timeout=60, grace=0)
        result = smoke_test(blobs(sb.blob_endpoint), CONTAINER, denied_budget=10.0)
        false_reachable += 0 if result.usable else 1
        close_rule(mgmt(sb), ref(sb), lease, grace=0)
        eventually(lambda: sb.agent_ip not in rules(sb), 5, "rule removed")
    assert false_reachable == 0


def test_a_removed_rule_keeps_admitting_for_the_removal_lag(sandbox_env: Sandbox) -> None:
    sb = sandbox_env
    prepare(sb, delay=0.0)
    sb.control.set_propagation(delay=0.0, removal_delay=30.0)
    open_rule(mgmt(sb), ref(sb), sb.agent_ip, "lag", 600, grace=0)
    close_rule(mgmt(sb), ref(sb), "lag", grace=0)
    assert sb.agent_ip not in rules(sb)
    assert smoke_test(blobs(sb.blob_endpoint), CONTAINER).usable  # ARM says closed; the data plane lags


def test_the_guard_process_open_starts_repairs_a_lost_rule_until_close_stops_it(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = sandbox_env
    prepare(sb)
    state = str(tmp_path / "state.json")
    common = ["--state-file", state, "--lease-id", "guarded"]
    assert main(["--ci", "plain", "--output", "json", "firewall", "open", "--guard-interval", "0.5s", *common]) == 0
    opened = json.loads(capsys.readouterr().out)
    pid = opened["guardPid"]
    assert pid and opened["closeCommand"].startswith("cicd-tools firewall close --lease-id guarded")
    # A competitor's stale write replaces the rule list and the tag map (the sandbox's direct edit stands in).
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": PERMANENT, "action": "Allow"}]}, tags={})
    eventually(lambda: sb.agent_ip in rules(sb) and "cicd-fw-guarded" in lease_tags(sb), 30, "the guard repaired")
    assert main(["--ci", "plain", "firewall", "close", "--grace", "1s", *common]) == 0
    eventually(lambda: not Path(f"/proc/{pid}").exists() or b"zombie" in _status(pid), 10, "the guard stopped")
    assert clean(sb)
    assert "re-applying" in (tmp_path / "firewall-guard-guarded.log").read_text()


def _status(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_during_close_with_its_patch_held_exits_at_once_and_the_watcher_removes_the_rule(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], sig: str
) -> None:
    """The close's PATCH is held 20 s: the signal ends the command without waiting for it (the hang guard is far
    below 20 s); the detached release watcher removes the lease and the rule once the PATCH lands."""
    sb = sandbox_env
    prepare(sb)
    state = str(tmp_path / "state.json")
    common = ["--state-file", state, "--lease-id", f"close-{sig.lower()}"]
    assert main(["--ci", "plain", "firewall", "open", "--guard-interval", "0", *common]) == 0
    capsys.readouterr()
    assert sb.agent_ip in rules(sb)
    sb.control.add_fault(service="arm", method="PATCH", kind="delay", delay=20.0, count=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "firewall", "close", "--grace", "3s", *common]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        eventually(_wait_hit(sb), 30, "the close's PATCH being held")
        signalled = time.monotonic()
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=10)  # a hang guard: waiting for the held PATCH would take 20 s
        with capsys.disabled():
            print(f"firewall close, {sig} with the PATCH held: exit {proc.returncode} "
                  f"{time.monotonic() - signalled:.2f} s after the signal")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "a watcher keeps removing lease" in err
    eventually(lambda: held_patch_landed(sb), 30, "the held PATCH landed")
    sb.control.clear_faults()
    eventually(lambda: clean(sb), 30, "no rule and no lease tag after the grace window")
