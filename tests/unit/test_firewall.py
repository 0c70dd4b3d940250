"""Firewall leases against a fake Microsoft.Storage (lease logic, concurrency, cleanup) and, through
``responses``, against the real azure-mgmt-storage client (429 + Retry-After, 503, dropped connections)."""

from __future__ import annotations

import copy
import json
import logging
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from urllib3.exceptions import ProtocolError

from cicd_tools.storage.agent_ip import AgentIpError
from cicd_tools.storage.firewall import (
    AccountRef,
    FirewallNotApplicable,
    Runtime,
    close_rule,
    open_rule,
    sweep,
    temporary_ip_rule,
)
from cicd_tools.storage.lease_tags import Lease
from cicd_tools.storage.leases import StateFile, TagBudgetExhausted
from cicd_tools.support.errors import (
    AzureError,
    ExitCode,
    Interrupted,
    NetworkDenied,
    PermissionMissing,
    Throttled,
    TimeoutExpired,
)

REF = AccountRef("00000000-0000-0000-0000-000000000001", "rg", "acct")
IP = "52.151.10.20"
OTHER_IP = "52.151.10.99"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = "cicd-fw-run-1"


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.t += seconds

    def monotonic(self) -> float:
        return self.t

    def runtime(self) -> Runtime:
        return Runtime(
            sleep=self.sleep, clock=self.monotonic, now=lambda: T0 + timedelta(seconds=self.t), rng=random.Random(7)
        )


def base_acls(**extra: Any) -> dict[str, Any]:
    return {
        "bypass": "AzureServices",
        "defaultAction": "Deny",
        "ipRules": [{"value": "20.30.40.50", "action": "Allow"}],
        "virtualNetworkRules": [{"id": "/subscriptions/x/vnets/v/subnets/s", "action": "Allow", "state": "Succeeded"}],
        "resourceAccessRules": [{"tenantId": "t", "resourceId": "/subscriptions/x/workspaces/w"}],
        **extra,
    }


class FakeAccounts:
    """``StorageAccountsApi`` with Azure's PATCH semantics: each networkAcls field replaces, tags replace all."""

    def __init__(
        self, acls: dict[str, Any] | None = None, tags: dict[str, str] | None = None, public: str = "Enabled"
    ) -> None:
        self.account: dict[str, Any] = {
            "id": REF.id,
            "name": REF.name,
            "tags": dict(tags or {"owner": "mlops"}),
            "properties": {"publicNetworkAccess": public, "networkAcls": acls if acls is not None else base_acls()},
        }
        self.gets = 0
        self.patches: list[dict[str, Any]] = []
        self.on_get: Callable[[FakeAccounts, int], None] | None = None
        self.on_patch: Callable[[FakeAccounts, dict[str, Any]], None] | None = None
        self.before_patch: Callable[[FakeAccounts, dict[str, Any]], None] | None = None

    def get(self, ref: AccountRef) -> dict[str, Any]:
        self.gets += 1
        if self.on_get:
            self.on_get(self, self.gets)
        return copy.deepcopy(self.account)

    def patch(self, ref: AccountRef, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(copy.deepcopy(body))
        if self.before_patch:
            self.before_patch(self, body)
        self.apply(body)
        if self.on_patch:
            self.on_patch(self, body)
        return copy.deepcopy(self.account)

    def apply(self, body: dict[str, Any]) -> None:
        for key, value in (body.get("properties", {}).get("networkAcls") or {}).items():
            self.account["properties"]["networkAcls"][key] = copy.deepcopy(value)
        if body.get("tags") is not None:
            self.account["tags"] = dict(body["tags"])

    @property
    def rules(self) -> list[str]:
        return [r["value"] for r in self.account["properties"]["networkAcls"].get("ipRules", [])]

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.account["tags"])


def stale_write(snapshot: dict[str, Any], add_ip: str | None = None) -> dict[str, Any]:
    """The PATCH a concurrent writer computed from an old read (no ETag: it overwrites ours)."""
    acls = copy.deepcopy(snapshot["properties"]["networkAcls"])
    if add_ip:
        acls["ipRules"] = [*acls["ipRules"], {"value": add_ip, "action": "Allow"}]
    return {"properties": {"networkAcls": acls}, "tags": dict(snapshot["tags"])}


def lease_tag(ip: str, expires: datetime, preexisting: bool) -> str:
    return f"{ip}|{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}|{1 if preexisting else 0}"


# --- open: read-merge-PATCH-verify ------------------------------------------------------------------


def test_open_adds_the_rule_and_a_lease_tag_and_patches_only_network_acls_and_tags() -> None:
    fake, clock = (
        FakeAccounts(
            acls=base_acls(ipv6Rules=[{"value": "2001:4860::1", "action": "Allow"}], futureField={"kept": True})
        ),
        FakeClock(),
    )
    result = open_rule(fake, REF, IP, "run-1", 7200, runtime=clock.runtime())
    assert IP in fake.rules and "20.30.40.50" in fake.rules
    assert fake.tags[LEASE] == lease_tag(IP, T0 + timedelta(hours=2), False)
    assert fake.tags["owner"] == "mlops"
    body = fake.patches[0]
    assert set(body) == {"properties", "tags"} and set(body["properties"]) == {"networkAcls"}
    sent = body["properties"]["networkAcls"]
    for field in ("bypass", "defaultAction", "virtualNetworkRules", "resourceAccessRules", "ipv6Rules", "futureField"):
        assert (
            sent[field]
            == base_acls(ipv6Rules=[{"value": "2001:4860::1", "action": "Allow"}], futureField={"kept": True})[field]
        )
    assert result.rule_added and not result.preexisting and result.rounds == 1
    assert result.expires_at == "2026-03-01T14:00:00Z"


def test_open_with_default_action_allow_changes_nothing_and_says_why() -> None:
    fake = FakeAccounts(acls={**base_acls(), "defaultAction": "Allow"})
    result = open_rule(fake, REF, IP, "run-1", 3600, runtime=FakeClock().runtime())
    assert result.skipped == "defaultAction Allow"
    assert fake.patches == []


def test_open_with_public_network_access_disabled_is_a_clear_error_and_changes_nothing() -> None:
    fake = FakeAccounts(public="Disabled")
    with pytest.raises(FirewallNotApplicable) as info:
        open_rule(fake, REF, IP, "run-1", 3600, runtime=FakeClock().runtime())
    assert info.value.code == "PublicNetworkAccessDisabled"
    assert "private endpoint" in info.value.hint
    assert fake.patches == []


def test_open_refuses_a_private_ip_before_touching_the_account() -> None:
    fake = FakeAccounts()
    with pytest.raises(AgentIpError):
        open_rule(fake, REF, "10.0.0.4", "run-1", 3600, runtime=FakeClock().runtime())
    assert fake.gets == 0


def test_a_rule_that_existed_before_open_is_recorded_preexisting_and_survives_close() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    result = open_rule(fake, REF, "20.30.40.50", "run-1", 3600, runtime=clock.runtime())
    assert result.preexisting and not result.rule_added
    assert fake.rules.count("20.30.40.50") == 1
    closed = close_rule(fake, REF, "run-1", runtime=clock.runtime())
    assert "20.30.40.50" in fake.rules and LEASE not in fake.tags
    assert closed.lease_removed and not closed.rule_removed


def test_an_ip_covered_by_a_wider_rule_is_not_added_and_never_removed() -> None:
    fake, clock = FakeAccounts(acls=base_acls(ipRules=[{"value": "52.151.10.0/24", "action": "Allow"}])), FakeClock()
    result = open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert result.covered_by == "52.151.10.0/24" and result.preexisting
    assert fake.rules == ["52.151.10.0/24"]
    close_rule(fake, REF, "run-1", runtime=clock.runtime())
    assert fake.rules == ["52.151.10.0/24"]


def test_a_rule_shared_by_two_live_leases_stays_until_the_last_one_closes() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    first = open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime())
    second = open_rule(fake, REF, IP, "run-2", 3600, runtime=clock.runtime())
    assert not first.preexisting and not second.preexisting  # held by a lease is not "pre-existing"
    close_rule(fake, REF, "run-1", runtime=clock.runtime())
    assert IP in fake.rules
    close_rule(fake, REF, "run-2", runtime=clock.runtime())
    assert IP not in fake.rules and not any(k.startswith("cicd-fw-") for k in fake.tags)


def test_a_sibling_job_sharing_the_run_lease_id_with_another_ip_is_refused_before_any_write() -> None:
    from cicd_tools.storage.leases import LeaseConflict

    fake, clock = FakeAccounts(), FakeClock()
    open_rule(fake, REF, OTHER_IP, "run-1", 3600, runtime=clock.runtime())
    writes = len(fake.patches)
    with pytest.raises(LeaseConflict) as info:
        open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert "System.JobId" in info.value.hint and info.value.exit_code == ExitCode.USAGE
    assert len(fake.patches) == writes


def test_close_with_a_state_record_never_touches_a_same_id_lease_of_another_ip() -> None:
    expires = T0 + timedelta(hours=1)
    acls = base_acls(ipRules=[{"value": IP, "action": "Allow"}, {"value": OTHER_IP, "action": "Allow"}])
    fake = FakeAccounts(acls=acls, tags={LEASE: lease_tag(OTHER_IP, expires, False)})
    close_rule(fake, REF, "run-1", fallback=Lease("run-1", IP, expires, False), runtime=FakeClock().runtime())
    assert IP not in fake.rules and OTHER_IP in fake.rules
    assert fake.tags[LEASE] == lease_tag(OTHER_IP, expires, False)


def test_open_refuses_cleanly_when_the_tag_budget_is_exhausted() -> None:
    fake = FakeAccounts(tags={f"t{i}": "x" for i in range(50)})
    with pytest.raises(TagBudgetExhausted) as info:
        open_rule(fake, REF, IP, "run-1", 3600, runtime=FakeClock().runtime())
    assert info.value.code == "TagLimitExceeded" and "sweep" in info.value.hint
    assert info.value.exit_code == ExitCode.AZURE
    assert fake.patches == [] and IP not in fake.rules


def test_open_refuses_cleanly_at_400_ip_rules() -> None:
    rules = [{"value": f"52.{i // 250}.{i % 250}.1", "action": "Allow"} for i in range(400)]
    fake = FakeAccounts(acls=base_acls(ipRules=rules))
    with pytest.raises(TagBudgetExhausted, match="400"):
        open_rule(fake, REF, IP, "run-1", 3600, runtime=FakeClock().runtime())
    assert fake.patches == []


# --- concurrency without ETag ---------------------------------------------------------------------


def test_open_repairs_a_rule_lost_to_a_concurrent_stale_write_before_returning() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    snapshot = copy.deepcopy(fake.account)  # the other writer read before our PATCH

    def clobber_once(f: FakeAccounts, body: dict[str, Any]) -> None:
        f.on_patch = None
        f.apply(stale_write(snapshot, add_ip=OTHER_IP))

    fake.on_patch = clobber_once
    result = open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert IP in fake.rules and OTHER_IP in fake.rules and LEASE in fake.tags
    assert result.rounds == 2


def test_open_repairs_a_loss_that_happens_during_the_settle_window() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    snapshot = copy.deepcopy(fake.account)
    patched_at_get: list[int] = []

    def late_stale_write(f: FakeAccounts, n: int) -> None:
        if f.patches and not patched_at_get and n == 4:  # after our verify GET succeeded once
            patched_at_get.append(n)
            f.apply(stale_write(snapshot))

    fake.on_get = late_stale_write
    result = open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert patched_at_get and IP in fake.rules and LEASE in fake.tags
    assert result.rounds == 2


def test_open_gives_up_after_the_round_budget_and_leaves_no_rule_behind() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    snapshot = copy.deepcopy(fake.account)

    def always_clobber(f: FakeAccounts, body: dict[str, Any]) -> None:
        if LEASE in body["tags"]:  # every write of ours is undone; the rollback's writes are not
            f.apply(stale_write(snapshot))

    fake.on_patch = always_clobber
    with pytest.raises(AzureError) as info:
        open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert info.value.code == "ConcurrentUpdate"
    assert IP not in fake.rules and LEASE not in fake.tags
    assert len(fake.patches) == 8  # the documented round budget


def test_retries_after_a_lost_round_are_jittered_not_fixed() -> None:
    delays = []
    for seed in (1, 2):
        fake, clock = FakeAccounts(), FakeClock()
        snapshot = copy.deepcopy(fake.account)
        fake.on_patch = lambda f, body, s=snapshot: (setattr(f, "on_patch", None), f.apply(stale_write(s)))
        runtime = Runtime(sleep=clock.sleep, clock=clock.monotonic, now=lambda: T0, rng=random.Random(seed))
        open_rule(fake, REF, IP, f"run-{seed}", 3600, runtime=runtime)
        delays.append(clock.sleeps[0])
    assert delays[0] != delays[1] and all(0.5 <= d <= 1.0 for d in delays)


# --- reachability --------------------------------------------------------------------------------


class ScriptedProbe:
    def __init__(self, *outcomes: bool | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_open_polls_the_data_plane_with_growing_delays_until_it_answers_three_times_in_a_row() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    denied = NetworkDenied("403", code="AuthorizationFailure")
    probe = ScriptedProbe(denied, denied, denied, denied, denied, True)
    result = open_rule(fake, REF, IP, "run-1", 3600, probe=probe, runtime=clock.runtime())
    assert probe.calls == 5 + 3  # five refusals, then the default three consecutive answers
    assert result.reachable_after is not None and result.reachable_after == pytest.approx(clock.t)
    assert clock.sleeps[:5] == sorted(clock.sleeps[:5]) and clock.sleeps[0] < clock.sleeps[4]


def test_a_flapping_data_plane_resets_the_streak_so_open_waits_for_consecutive_answers() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    denied = NetworkDenied("403", code="AuthorizationFailure")
    probe = ScriptedProbe(True, True, denied, True, denied, True, True, True)
    open_rule(fake, REF, IP, "run-1", 3600, probe=probe, runtime=clock.runtime())
    assert probe.calls == 8  # admitted twice, refused, admitted, refused: only the last three count


def test_a_rule_lost_while_waiting_for_propagation_is_re_added_instead_of_polled_until_timeout() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    snapshot = copy.deepcopy(fake.account)
    denied = NetworkDenied("403", code="AuthorizationFailure")

    def probe() -> bool:
        if clock.t < 5.0:  # settled after ~1 s, still propagating
            raise denied
        return IP in fake.rules

    def lose_rule_after_settling(f: FakeAccounts, n: int) -> None:
        if clock.t > 2.0:
            f.on_get = None
            f.apply(stale_write(snapshot))

    fake.on_get = lose_rule_after_settling
    result = open_rule(fake, REF, IP, "run-1", 3600, probe=probe, timeout=60, runtime=clock.runtime())
    assert result.rounds == 2 and result.reachable_after is not None
    assert IP in fake.rules and clock.t < 15


def test_an_rbac_gap_stops_polling_at_once_and_removes_the_rule() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    probe = ScriptedProbe(PermissionMissing("403", code="AuthorizationPermissionMismatch"))
    with pytest.raises(PermissionMissing) as info:
        open_rule(fake, REF, IP, "run-1", 3600, probe=probe, runtime=clock.runtime())
    assert info.value.code == "AuthorizationPermissionMismatch"
    assert probe.calls == 1
    assert IP not in fake.rules and LEASE not in fake.tags


def test_a_rule_that_never_propagates_times_out_and_leaves_no_rule_behind() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    denied = ScriptedProbe(NetworkDenied("403", code="AuthorizationFailure"))
    probed_at: list[float] = []

    def probe() -> bool:
        probed_at.append(clock.t)
        return denied()

    with pytest.raises(TimeoutExpired) as info:
        open_rule(fake, REF, IP, "run-1", 3600, probe=probe, timeout=20, runtime=clock.runtime())
    assert info.value.exit_code == ExitCode.TIMEOUT
    assert "AuthorizationFailure" in info.value.message
    assert max(probed_at) <= 20 and max(probed_at) > 15  # polled up to the budget, not beyond
    assert IP not in fake.rules and LEASE not in fake.tags


def test_a_signal_during_the_propagation_poll_reports_what_the_rollback_removed() -> None:
    from cicd_tools.storage.firewall import RollbackReport

    fake, clock = FakeAccounts(), FakeClock()
    reports: list[RollbackReport] = []

    def sigterm() -> bool:
        assert IP in fake.rules  # the rule is in place while we wait for the data plane
        raise Interrupted("received signal SIGTERM")

    with pytest.raises(Interrupted):
        open_rule(fake, REF, IP, "run-1", 3600, probe=sigterm, runtime=clock.runtime(), grace=0,
                  on_rollback=reports.append)
    assert IP not in fake.rules and LEASE not in fake.tags
    [report] = reports
    assert (report.ip, report.lease_id, report.rule_added, report.lease_removed, report.rule_removed) == (
        IP, "run-1", True, True, True)
    assert f"rule {IP}" in report.note


def test_a_rollback_after_an_unanswered_patch_reports_what_it_saw_not_what_it_hoped() -> None:
    from cicd_tools.storage.firewall import RollbackReport

    fake, clock = FakeAccounts(), FakeClock()
    reports: list[RollbackReport] = []

    def cancelled_in_flight(acct: FakeAccounts, body: dict[str, Any]) -> None:
        raise Interrupted("received signal SIGTERM")  # our PATCH is on the wire, its answer never read

    fake.before_patch = cancelled_in_flight
    with pytest.raises(Interrupted):
        open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime(), grace=0, on_rollback=reports.append)
    [report] = reports
    assert (report.rule_added, report.rule_removed) == (True, False)  # it may land: the rule was never seen
    assert "unanswered" in report.note


# --- state file ----------------------------------------------------------------------------------


def test_the_state_file_is_written_before_the_patch_and_updated_after(tmp_path: Path) -> None:
    fake, clock = FakeAccounts(), FakeClock()
    state = StateFile(tmp_path / "firewall-state.json")
    seen: list[str] = []
    fake.on_patch = lambda f, body: seen.append(next(iter(state.entries().values())).phase) if not seen else None
    open_rule(fake, REF, IP, "run-1", 3600, state=state, runtime=clock.runtime())
    assert seen == ["opening"]
    entry = state.entries()[REF.id.lower()]
    assert (entry.phase, entry.ip, entry.lease_id, entry.preexisting) == ("open", IP, "run-1", False)
    close_rule(fake, REF, "run-1", fallback=entry.lease(), state=state, runtime=clock.runtime())
    assert state.entries()[REF.id.lower()].phase == "closed"


def test_the_state_file_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateFile(tmp_path / "firewall-state.json")
    fake, clock = FakeAccounts(), FakeClock()
    open_rule(fake, REF, IP, "run-1", 3600, state=state, runtime=clock.runtime())
    before = state.path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("cicd_tools.support.outpath.os.replace", broken_replace)
    with pytest.raises(OSError):
        state.set_phase(REF.id, "closed")
    assert state.path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["firewall-state.json"]  # no temp file left behind


def test_a_crash_whose_rollback_also_fails_is_cleaned_up_later_from_the_state_file(tmp_path: Path) -> None:
    fake, clock = FakeAccounts(), FakeClock()
    state = StateFile(tmp_path / "firewall-state.json")

    def crash(f: FakeAccounts, body: dict[str, Any]) -> None:
        f.account["tags"].pop(LEASE)  # the tag was lost too: only the state file knows the rule is ours
        f.on_patch, f.before_patch = None, arm_down
        raise SystemExit("agent stopping")

    def arm_down(f: FakeAccounts, body: dict[str, Any]) -> None:
        raise AzureError("ARM unreachable", code="ConnectionFailed")

    fake.on_patch = crash
    with pytest.raises(SystemExit):
        open_rule(fake, REF, IP, "run-1", 3600, state=state, runtime=clock.runtime())
    assert IP in fake.rules  # the rollback could not reach ARM
    entry = state.entries()[REF.id.lower()]
    assert entry.phase == "close-failed" and entry.preexisting is False
    fake.before_patch = None
    close_rule(fake, REF, "run-1", fallback=entry.lease(), state=state, runtime=clock.runtime())
    assert IP not in fake.rules and state.entries()[REF.id.lower()].phase == "closed"


def test_close_is_safe_twice_and_when_open_never_ran() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    never = close_rule(fake, REF, "run-9", runtime=clock.runtime())
    assert never.nothing_to_do and fake.patches == []
    open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime())
    close_rule(fake, REF, "run-1", runtime=clock.runtime())
    patches = len(fake.patches)
    again = close_rule(fake, REF, "run-1", runtime=clock.runtime())
    assert again.nothing_to_do and len(fake.patches) == patches


# --- sweep ---------------------------------------------------------------------------------------


def test_sweep_removes_expired_leases_and_only_the_rules_no_one_else_holds() -> None:
    past, future = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    acls = base_acls(
        ipRules=[
            {"value": v, "action": "Allow"} for v in ("20.30.40.50", "52.0.0.1", "52.0.0.2", "52.0.0.3", "52.0.0.4")
        ]
    )
    tags = {
        "owner": "mlops",
        "cicd-fw-dead-1": lease_tag("52.0.0.1", past, False),  # abandoned: rule goes
        "cicd-fw-dead-2": lease_tag("52.0.0.2", past, False),  # a live lease holds the same IP: rule stays
        "cicd-fw-live-2": lease_tag("52.0.0.2", future, False),
        "cicd-fw-dead-3": lease_tag("52.0.0.3", past, True),  # pre-existing: rule stays
        "cicd-fw-live-4": lease_tag("52.0.0.4", future, False),
    }
    fake = FakeAccounts(acls=acls, tags=tags)
    result = sweep(fake, REF, runtime=FakeClock().runtime())
    assert sorted(x.lease_id for x in result.swept) == ["dead-1", "dead-2", "dead-3"]
    assert result.rules_removed == ("52.0.0.1",)
    assert fake.rules == ["20.30.40.50", "52.0.0.2", "52.0.0.3", "52.0.0.4"]
    assert set(fake.tags) == {"owner", "cicd-fw-live-2", "cicd-fw-live-4"}


def test_sweep_with_nothing_expired_writes_nothing() -> None:
    fake = FakeAccounts(tags={"cicd-fw-live": lease_tag(IP, T0 + timedelta(hours=1), False)})
    assert sweep(fake, REF, runtime=FakeClock().runtime()).swept == ()
    assert fake.patches == []


# --- the context manager ------------------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError("step failed"), KeyboardInterrupt(), Interrupted("SIGTERM")])
def test_temporary_ip_rule_closes_on_every_kind_of_exit(error: BaseException) -> None:
    fake, clock = FakeAccounts(), FakeClock()
    with pytest.raises(type(error)), temporary_ip_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime()):
        assert IP in fake.rules
        raise error
    assert IP not in fake.rules and LEASE not in fake.tags


def test_temporary_ip_rule_closes_after_a_clean_exit() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    with temporary_ip_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime()) as opened:
        assert opened.rule_added
    assert IP not in fake.rules and "20.30.40.50" in fake.rules


def test_a_failing_close_is_logged_loudly_and_does_not_mask_the_original_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = FakeAccounts(), FakeClock()

    def refuse(f: FakeAccounts, body: dict[str, Any]) -> None:
        raise AzureError("ARM is down", code="ServiceUnavailable")

    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(RuntimeError, match="the real failure"),
        temporary_ip_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime()),
    ):
        fake.on_patch = refuse
        raise RuntimeError("the real failure")
    assert "FIREWALL RULE MAY REMAIN" in caplog.text and IP in caplog.text


# --- the real SDK over `responses`: 429 + Retry-After, 503, dropped connections ------------------

ARM = "https://management.sandbox.test"
URL = f"{ARM}{REF.id}"


class StaticCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("header.payload.sig", 4_102_444_800)


def mgmt_client() -> Any:
    from azure.mgmt.storage import StorageManagementClient

    return StorageManagementClient(
        StaticCredential(), REF.subscription_id, base_url=ARM, credential_scopes=[f"{ARM}/.default"]
    )


class ArmAccount:
    """A stateful GET/PATCH pair for ``responses`` with PATCH faults served first, in order."""

    def __init__(self, *patch_faults: Any) -> None:
        self.fake = FakeAccounts()
        self.patch_faults = list(patch_faults)
        self.patch_bodies: list[dict[str, Any]] = []

    def install(self) -> None:
        responses.add_callback(responses.GET, URL, callback=self.get)
        responses.add_callback(responses.PATCH, URL, callback=self.patch)

    def get(self, request: Any) -> tuple[int, dict[str, str], str]:
        return 200, {"Content-Type": "application/json"}, json.dumps(self.fake.get(REF))

    def patch(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        self.patch_bodies.append(body)
        if self.patch_faults:
            fault = self.patch_faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            status, headers = fault
            error = {"error": {"code": "TooManyRequests" if status == 429 else "ServerBusy", "message": "busy"}}
            return status, {"Content-Type": "application/json", **headers}, json.dumps(error)
        return 200, {"Content-Type": "application/json"}, json.dumps(self.fake.patch(REF, body))


@responses.activate
def test_a_429_with_retry_after_on_the_patch_is_honoured_and_retried_once() -> None:
    arm, clock = ArmAccount((429, {"Retry-After": "7"})), FakeClock()
    arm.install()
    result = open_rule(mgmt_client(), REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert len(arm.patch_bodies) == 2  # azure-core's own retry policy is off: exactly one retry, ours
    assert clock.sleeps[0] >= 7.0
    assert IP in arm.fake.rules and result.rounds == 1


@responses.activate
def test_503s_on_the_patch_are_retried_with_backoff_within_the_budget() -> None:
    arm, clock = ArmAccount((503, {}), (503, {})), FakeClock()
    arm.install()
    open_rule(mgmt_client(), REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert len(arm.patch_bodies) == 3
    assert clock.sleeps[0] <= 1.0 <= clock.sleeps[1]  # jittered in [c/2, c], the ceiling c doubling
    assert IP in arm.fake.rules


@responses.activate
def test_a_dropped_connection_on_the_patch_is_retried_and_the_result_verified() -> None:
    dropped = requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104)))
    arm, clock = ArmAccount(dropped), FakeClock()
    arm.install()
    open_rule(mgmt_client(), REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert len(arm.patch_bodies) == 2 and IP in arm.fake.rules


@responses.activate
def test_a_patch_retried_after_a_503_is_replanned_from_a_fresh_read() -> None:
    arm, clock = ArmAccount((503, {})), FakeClock()
    arm.install()

    def sleep_while_another_writer_adds_a_rule(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            arm.fake.patch(REF, stale_write(arm.fake.get(REF), add_ip=OTHER_IP))

    runtime = Runtime(
        sleep=sleep_while_another_writer_adds_a_rule, clock=clock.monotonic, now=lambda: T0, rng=random.Random(3)
    )
    open_rule(mgmt_client(), REF, IP, "run-1", 3600, runtime=runtime)
    retried = arm.patch_bodies[1]["properties"]["networkAcls"]["ipRules"]
    assert {"value": OTHER_IP, "action": "Allow"} in retried  # never re-sent the body computed before the pause
    assert IP in arm.fake.rules and OTHER_IP in arm.fake.rules


@responses.activate
def test_a_retry_after_beyond_the_budget_gives_up_at_once_as_throttled() -> None:
    arm, clock = ArmAccount((429, {"Retry-After": "600"})), FakeClock()
    arm.install()
    with pytest.raises(Throttled) as info:
        open_rule(mgmt_client(), REF, IP, "run-1", 3600, timeout=60, runtime=clock.runtime())
    assert "600" in info.value.message and info.value.exit_code == ExitCode.AZURE
    assert clock.t < 60  # never slept past the budget
    assert IP not in arm.fake.rules


@responses.activate
def test_persistent_503s_exhaust_the_call_budget_and_leave_no_rule() -> None:
    arm, clock = ArmAccount(*[(503, {})] * 6), FakeClock()
    arm.install()
    with pytest.raises(Throttled):
        open_rule(mgmt_client(), REF, IP, "run-1", 3600, runtime=clock.runtime())
    assert len(arm.patch_bodies) == 6
    assert IP not in arm.fake.rules


@responses.activate
def test_the_wire_patch_carries_every_network_acls_field_back_unchanged() -> None:
    arm = ArmAccount()
    arm.fake.account["properties"]["networkAcls"]["ipv6Rules"] = [{"value": "2001:4860::1", "action": "Allow"}]
    arm.install()
    open_rule(mgmt_client(), REF, IP, "run-1", 3600, runtime=FakeClock().runtime())
    sent = arm.patch_bodies[0]
    assert set(sent) == {"properties", "tags"} and list(sent["properties"]) == ["networkAcls"]
    assert sent["properties"]["networkAcls"]["ipv6Rules"] == [{"value": "2001:4860::1", "action": "Allow"}]
    assert sent["properties"]["networkAcls"]["virtualNetworkRules"] == base_acls()["virtualNetworkRules"]
    assert sent["properties"]["networkAcls"]["resourceAccessRules"] == base_acls()["resourceAccessRules"]


@responses.activate
def test_arm_authorization_failed_is_classified_with_the_role_to_grant() -> None:
    responses.get(URL, status=403, json={"error": {"code": "AuthorizationFailed", "message": "no write"}})
    with pytest.raises(AzureError) as info:
        open_rule(mgmt_client(), REF, IP, "run-1", 3600, runtime=FakeClock().runtime())
    assert info.value.code == "AuthorizationFailed"
    assert "Storage Account Contributor" in info.value.hint
    assert len(responses.calls) == 1  # a 403 is not retried


def test_a_lease_records_ip_expiry_and_preexisting_in_one_tag() -> None:
    lease = Lease("gh-123-2", IP, T0, True)
    assert (lease.tag_name, lease.tag_value) == ("cicd-fw-gh-123-2", f"{IP}|2026-03-01T12:00:00Z|1")


# --- leases and their tag format ------------------------------------------------------------------


def test_lease_ids_come_from_the_ci_run_so_every_job_of_a_run_shares_one() -> None:
    from cicd_tools.storage.lease_tags import default_lease_id

    assert default_lease_id({"BUILD_BUILDID": "4711"}) == "ado-4711"
    assert default_lease_id({"GITHUB_RUN_ID": "99", "GITHUB_RUN_ATTEMPT": "3"}) == "gh-99-3"
    # parallel jobs of one run hold leases of their own
    job_id = "0e1c8a57-3b6b-5b5e-9d36-3bd2b8a2a2c4"
    assert default_lease_id({"BUILD_BUILDID": "4711", "SYSTEM_JOBID": job_id}) == f"ado-4711-{job_id}"
    github_job = {"GITHUB_RUN_ID": "99", "GITHUB_RUN_ATTEMPT": "3", "GITHUB_JOB": "train"}
    assert default_lease_id(github_job) == "gh-99-3-train"
    local = default_lease_id({})
    assert local.startswith("local-") and local != default_lease_id({})


def test_unusable_lease_ids_and_durations_are_usage_errors() -> None:
    from cicd_tools.storage.lease_tags import parse_duration, validate_lease_id
    from cicd_tools.support.errors import UsageError

    assert [parse_duration(x) for x in ("90", "90s", "30m", "2h", "1d")] == [90, 90, 1800, 7200, 86400]
    for bad in ("soon", "-5m", "0"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    for bad in ("has/slash", "", "x" * 81, "a?b"):
        with pytest.raises(UsageError):
            validate_lease_id(bad)


def test_malformed_lease_tags_are_ignored_not_trusted() -> None:
    from cicd_tools.storage.lease_tags import leases_in, parse_lease_tag

    assert parse_lease_tag("cicd-fw-x", "not-an-ip|2026-01-01T00:00:00Z|0") is None
    assert parse_lease_tag("cicd-fw-x", f"{IP}|yesterday|0") is None
    assert parse_lease_tag("owner", f"{IP}|2026-01-01T00:00:00Z|0") is None
    assert [x.lease_id for x in leases_in({"cicd-fw-a": f"{IP}|2026-01-01T00:00:00Z|0", "cicd-fw-b": "junk"})] == ["a"]


# --- CLI -----------------------------------------------------------------------------------------


def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CICD_ARM_ENDPOINT", ARM)
    monkeypatch.setenv("CICD_SUBSCRIPTION_ID", REF.subscription_id)
    monkeypatch.setenv("CICD_RESOURCE_GROUP", REF.resource_group)
    monkeypatch.setenv("CICD_STORAGE_ACCOUNT", REF.name)
    monkeypatch.setenv("CICD_BLOB_ENDPOINT", "https://acct.blob.core.windows.net")
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    monkeypatch.setattr("cicd_tools.credentials.build_credential", lambda: StaticCredential())
    return tmp_path / "firewall-state.json"


@responses.activate
def test_cli_open_then_close_sets_ci_outputs_and_removes_the_rule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.ci import parse_github_output_file
    from cicd_tools.cli.main import main

    state_path = _cli_env(monkeypatch, tmp_path)
    outputs = tmp_path / "github-output"
    outputs.touch()
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_RUN_ID", "123")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    arm = ArmAccount()
    arm.install()
    empty = '<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs /><NextMarker /></EnumerationResults>'
    responses.get(
        re.compile(r"https://acct\.blob\.core\.windows\.net/ml-globals\?.*"), body=empty, content_type="application/xml"
    )

    argv = ["--ci", "github", "--output", "json", "firewall", "open", "--ip", IP, "--ttl", "30m"]
    argv += ["--guard-interval", "0"]
    assert main(argv) == 0
    opened = json.loads(capsys.readouterr().out)
    assert opened["leaseId"] == "gh-123-2" and opened["reachableAfter"] is not None
    assert parse_github_output_file(outputs.read_text()) == {"agentIp": IP, "leaseId": "gh-123-2"}
    assert arm.fake.tags["cicd-fw-gh-123-2"].startswith(f"{IP}|") and IP in arm.fake.rules
    assert json.loads(state_path.read_text())["entries"][REF.id.lower()]["phase"] == "open"

    assert main(["--ci", "plain", "firewall", "close", "--grace", "0"]) == 0
    assert IP not in arm.fake.rules and "cicd-fw-gh-123-2" not in arm.fake.tags
    assert main(["--ci", "plain", "firewall", "close"]) == 0  # twice is fine
    assert "nothing to close" in capsys.readouterr().out


def test_cli_close_without_any_open_says_so_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.cli.main import main

    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    assert main(["--ci", "plain", "firewall", "close"]) == 0
    assert "open never ran" in capsys.readouterr().out


def test_cli_open_with_a_private_ip_exits_2_before_any_azure_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.cli.main import main

    _cli_env(monkeypatch, tmp_path)
    assert main(["--ci", "plain", "firewall", "open", "--ip", "10.1.2.3"]) == 2
    err = capsys.readouterr().err
    assert "private" in err and "same Azure region" in err


def test_cli_open_without_an_account_names_the_missing_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.cli.main import main

    assert main(["--ci", "plain", "firewall", "open", "--ip", IP]) == 2
    assert "--subscription-id / CICD_SUBSCRIPTION_ID" in capsys.readouterr().err
