"""Cancellation, deadlines, the guard and the release watch, against the fake Microsoft.Storage of test_firewall
(Azure's PATCH semantics, no ETag) and, for the CLI, the real azure-mgmt-storage client over ``responses``."""

from __future__ import annotations

import copy
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses

from cicd_tools.storage.deadline import CallTimedOut, bounded_call
from cicd_tools.storage.denied import retry_while_denied
from cicd_tools.storage.firewall import RuleGuard, close_rule, open_rule
from cicd_tools.storage.guard import watch_release
from cicd_tools.storage.lease_tags import Lease
from cicd_tools.support.errors import CicdError, ExitCode, Interrupted, NetworkDenied, Throttled, TimeoutExpired
from tests.unit.test_firewall import (
    IP,
    LEASE,
    REF,
    T0,
    ArmAccount,
    FakeAccounts,
    FakeClock,
    ScriptedProbe,
    _cli_env,
    stale_write,
)

# --- Interrupted is a BaseException ----------------------------------------------------------------


def test_interrupted_is_not_caught_by_broad_exception_handlers_but_keeps_its_report() -> None:
    def sdk_like_broad_handler() -> str:
        try:
            raise Interrupted("received signal SIGTERM")
        except Exception:  # what azure-identity's credential chain does
            return "swallowed"

    with pytest.raises(Interrupted) as info:
        sdk_like_broad_handler()
    assert not isinstance(info.value, Exception) and not isinstance(info.value, CicdError)
    assert info.value.exit_code == ExitCode.INTERRUPTED == 130
    assert info.value.to_dict()["exitCode"] == 130 and info.value.hint


def test_the_cli_reports_an_interrupted_handler_as_exit_130_with_its_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.cli.main import main

    _cli_env(monkeypatch, tmp_path)

    def cancelled(*args: Any, **kwargs: Any) -> Any:
        raise Interrupted("received signal SIGTERM")

    monkeypatch.setattr("cicd_tools.storage.agent_ip.resolve_agent_ip", cancelled)
    assert main(["--ci", "plain", "firewall", "open"]) == 130
    assert "received signal SIGTERM" in capsys.readouterr().err


# --- deadlines -------------------------------------------------------------------------------------


def test_a_bounded_call_returns_control_when_the_time_is_up_and_passes_errors_through() -> None:
    release = threading.Event()
    with pytest.raises(CallTimedOut):
        bounded_call(lambda: release.wait(30), 0.05, "a hung token fetch")
    release.set()
    with pytest.raises(ValueError, match="boom"):
        bounded_call(lambda: (_ for _ in ()).throw(ValueError("boom")), 5, "x")
    assert bounded_call(lambda: 7, 5, "x") == 7


def test_a_timeout_names_the_last_status_seen_not_a_guess() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    busy = Throttled("503 ServerBusy: The server is busy.", code="ServerBusy")
    with pytest.raises(TimeoutExpired) as info:
        open_rule(fake, REF, IP, "run-1", 3600, probe=ScriptedProbe(busy), timeout=10, runtime=clock.runtime(), grace=0)
    assert "503 ServerBusy" in info.value.message
    assert "AuthorizationFailure" not in info.value.message and "same-region" not in info.value.message
    assert IP not in fake.rules


def test_a_probe_retry_after_beyond_the_budget_gives_up_at_once_instead_of_hammering() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    throttled = Throttled("429 TooManyRequests: slow down", code="TooManyRequests")
    throttled.retry_after = 30.0
    probe = ScriptedProbe(throttled)
    with pytest.raises(TimeoutExpired) as info:
        open_rule(fake, REF, IP, "run-1", 3600, probe=probe, timeout=15, runtime=clock.runtime(), grace=0)
    assert probe.calls == 1 and "retry after 30 s" in info.value.message and "429" in info.value.message


def test_a_probe_retry_after_within_the_budget_is_waited_for_before_the_next_probe() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    throttled = Throttled("429 TooManyRequests: slow down", code="TooManyRequests")
    throttled.retry_after = 6.0
    seen: list[float] = []
    script = ScriptedProbe(throttled, True)

    def probe() -> bool:
        seen.append(clock.t)
        return script()

    open_rule(fake, REF, IP, "run-1", 3600, probe=probe, timeout=60, runtime=clock.runtime(), grace=0)
    assert seen[1] - seen[0] >= 6.0


# --- rollback after a cancel ------------------------------------------------------------------------


def test_a_cancel_during_our_patch_hands_the_removal_to_a_watcher_and_says_the_patch_was_unanswered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = FakeAccounts(), FakeClock()
    handed: list[tuple[Lease, float]] = []

    def cancelled_in_flight(f: FakeAccounts, body: dict[str, Any]) -> None:
        f.before_patch = None
        raise Interrupted("received signal SIGTERM")  # the PATCH was sent; its answer never came

    fake.before_patch = cancelled_in_flight
    with caplog.at_level(logging.ERROR), pytest.raises(Interrupted):
        open_rule(
            fake, REF, IP, "run-1", 3600, runtime=clock.runtime(), grace=12.0,
            handoff=lambda lease, grace: handed.append((lease, grace)),
        )
    assert [(lease.ip, grace) for lease, grace in handed] == [(IP, 12.0)]
    assert "unanswered" in caplog.text and "a watcher keeps removing" in caplog.text


def test_a_cancel_during_the_probe_without_a_handoff_removes_the_rule_in_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = FakeAccounts(), FakeClock()

    def cancelled_probe() -> bool:
        raise Interrupted("received signal SIGINT")

    with caplog.at_level(logging.ERROR), pytest.raises(Interrupted):
        open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime(), probe=cancelled_probe, grace=2.0)
    assert IP not in fake.rules and LEASE not in fake.tags
    assert "1 PATCH(es) of ours had landed" in caplog.text and "removed lease run-1 and rule" in caplog.text


# --- the guard and the release watch ---------------------------------------------------------------


def lease() -> Lease:
    return Lease("run-1", IP, T0 + timedelta(hours=1), False)


def test_the_guard_repairs_a_rule_and_tag_lost_to_a_stale_write_and_leaves_a_held_rule_alone() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    snapshot = copy.deepcopy(fake.account)
    open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime(), grace=0)
    guard = RuleGuard(fake, REF, lease(), runtime=clock.runtime())
    assert guard.check_once() is False  # intact: nothing written
    patches = len(fake.patches)
    fake.apply(stale_write(snapshot, add_ip="52.151.10.77"))  # a competitor's body from before our open
    assert IP not in fake.rules and LEASE not in fake.tags
    assert guard.check_once() is True
    assert IP in fake.rules and LEASE in fake.tags and "52.151.10.77" in fake.rules
    assert len(fake.patches) == patches + 1


def test_the_release_watch_removes_a_rule_a_stale_patch_brings_back_and_keeps_watching_longer() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime(), grace=0)
    with_rule = copy.deepcopy(fake.account)
    close_rule(fake, REF, "run-1", runtime=clock.runtime(), grace=0)
    assert IP not in fake.rules
    started = clock.t
    resurrect_at = {started + 3.0, started + 7.0}

    def stale_lands(f: FakeAccounts, n: int) -> None:
        if any(abs(clock.t - at) < 0.6 for at in resurrect_at):
            resurrect_at.discard(min(resurrect_at, key=lambda at: abs(clock.t - at)))
            f.apply(stale_write(with_rule))

    fake.on_get = stale_lands
    removed = watch_release(fake, REF, "run-1", lease(), 5.0, runtime=clock.runtime())
    assert removed == 2 and IP not in fake.rules and LEASE not in fake.tags
    assert clock.t - started > 7.0  # the second resurrection came after the first 5 s: the watch was extended


def test_close_watches_for_the_grace_window_and_reports_what_it_re_removed() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime(), grace=0)
    with_rule = copy.deepcopy(fake.account)
    landed: list[float] = []
    closing = clock.t

    def late_stale_patch(f: FakeAccounts, n: int) -> None:
        if not landed and IP not in f.rules and clock.t - closing > 2.5:  # after close's own settle window
            landed.append(clock.t)
            f.apply(stale_write(with_rule))

    fake.on_get = late_stale_patch
    closed = close_rule(fake, REF, "run-1", runtime=clock.runtime(), grace=4.0)
    assert landed and closed.re_removed >= 1 and closed.watched >= 4.0
    assert IP not in fake.rules and LEASE not in fake.tags and "20.30.40.50" in fake.rules


# --- smoke / register retry AuthorizationFailure ---------------------------------------------------


def test_retry_while_denied_retries_firewall_refusals_not_throttling_within_its_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    outcomes: list[Exception | str] = [NetworkDenied("403", code="AuthorizationFailure")] * 2 + ["ok"]

    def flapping() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    with caplog.at_level(logging.INFO):
        assert retry_while_denied(flapping, "smoke list", budget=10, sleep=clock.sleep, clock=clock.monotonic) == "ok"
    assert "may still be propagating" in caplog.text and len(clock.sleeps) == 2
    with pytest.raises(Throttled):
        retry_while_denied(lambda: (_ for _ in ()).throw(Throttled("503")), "x", sleep=clock.sleep)
    denied = NetworkDenied("403", code="AuthorizationFailure")
    before = clock.t
    with pytest.raises(NetworkDenied):
        retry_while_denied(lambda: (_ for _ in ()).throw(denied), "x", budget=5, sleep=clock.sleep,
                           clock=clock.monotonic)
    assert clock.t - before <= 5


# --- across jobs -----------------------------------------------------------------------------------


@responses.activate
def test_close_without_a_matching_lease_names_the_live_lease_of_this_ip_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.cli.main import main

    _cli_env(monkeypatch, tmp_path)
    arm = ArmAccount()
    arm.install()
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    arm.fake.account["tags"]["cicd-fw-ado-1-job-a"] = f"{IP}|{expiry}|0"
    arm.fake.account["properties"]["networkAcls"]["ipRules"].append({"value": IP, "action": "Allow"})
    monkeypatch.setenv("BUILD_BUILDID", "1")
    monkeypatch.setenv("SYSTEM_JOBID", "job-b")  # close runs in another job: its default lease id differs
    assert main(["--ci", "plain", "firewall", "close", "--ip", IP, "--grace", "0"]) == 2
    err = capsys.readouterr().err
    assert "lease ado-1-job-a holds this agent's IP" in err
    assert "cicd-tools firewall close --lease-id ado-1-job-a" in err
    assert main(["--ci", "plain", "firewall", "close", "--lease-id", "ado-1-job-a", "--grace", "0"]) == 0
    assert IP not in arm.fake.rules and "cicd-fw-ado-1-job-a" not in arm.fake.tags


# --- guarded leases are renewed; a dead guard's lease (or a resurrected one) is swept within minutes ----


def test_a_guarded_lease_is_renewed_by_its_guard_and_swept_soon_after_the_guard_stops() -> None:
    from cicd_tools.storage.firewall import sweep
    from cicd_tools.storage.lease_tags import parse_lease_tag

    fake, clock = FakeAccounts(), FakeClock()
    opened = open_rule(fake, REF, IP, "run-1", 7200, runtime=clock.runtime(), grace=0, renew_for=300)
    assert opened.renew_by is not None and fake.tags[LEASE].endswith(opened.renew_by)
    held = parse_lease_tag(LEASE, fake.tags[LEASE])
    assert held is not None and held.renew_by is not None
    guard = RuleGuard(fake, REF, held, runtime=clock.runtime(), renew_every=60, renew_for=300)
    clock.sleep(30)
    assert guard.check_once() is False and guard.renewals == 0  # not due yet: nothing written
    clock.sleep(60)
    assert guard.check_once() is False and guard.renewals == 1  # due: one PATCH, not counted as a repair
    renewed = parse_lease_tag(LEASE, fake.tags[LEASE])
    assert renewed is not None and renewed.renew_by is not None and renewed.renew_by > held.renew_by
    clock.sleep(400)  # the guard died with its job; the lease's TTL is still more than an hour away
    swept = sweep(fake, REF, runtime=clock.runtime())
    assert [x.lease_id for x in swept.swept] == ["run-1"] and IP not in fake.rules and LEASE not in fake.tags


def test_a_lease_a_stale_patch_resurrects_after_the_grace_window_is_sweepable_once_its_renewal_lapses() -> None:
    from cicd_tools.storage.firewall import sweep

    fake, clock = FakeAccounts(), FakeClock()
    open_rule(fake, REF, IP, "run-1", 7200, runtime=clock.runtime(), grace=0, renew_for=300)
    with_rule = copy.deepcopy(fake.account)
    close_rule(fake, REF, "run-1", runtime=clock.runtime(), grace=2.0)
    fake.apply(stale_write(with_rule))  # a competitor slower than the grace window
    assert IP in fake.rules
    assert sweep(fake, REF, runtime=clock.runtime()).swept == ()  # renew-by still ahead: looks live
    clock.sleep(301)
    assert [x.lease_id for x in sweep(fake, REF, runtime=clock.runtime()).swept] == ["run-1"]
    assert IP not in fake.rules and "20.30.40.50" in fake.rules


@pytest.mark.parametrize("guarded", [False, True])
def test_a_writer_that_keeps_undoing_the_change_fails_an_unguarded_open_but_not_a_guarded_one(guarded: bool) -> None:
    from cicd_tools.support.errors import AzureError

    fake, clock = FakeAccounts(), FakeClock()
    snapshot = copy.deepcopy(fake.account)

    def stale_again_and_again(f: FakeAccounts, n: int) -> None:
        if n > 3 and n % 2 == 0:  # every other read finds a stale competitor's body landed again
            f.apply(stale_write(snapshot))

    fake.on_get = stale_again_and_again
    if guarded:
        result = open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime(), grace=0, renew_for=300.0)
        assert result.rounds > 8 and IP in fake.rules  # the guard defends it from here
    else:
        with pytest.raises(AzureError) as info:
            open_rule(fake, REF, IP, "run-1", 3600, runtime=clock.runtime(), grace=0, timeout=600)
        assert info.value.code == "ConcurrentUpdate" and clock.t < 600  # not spinning until the deadline
