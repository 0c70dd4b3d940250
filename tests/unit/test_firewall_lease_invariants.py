"""Lease invariants under refused commands, tags-only stale writes and random interleavings (issue 18).

The library runs against ``FakeAccounts`` (Microsoft.Storage's PATCH semantics: each ``networkAcls`` field
replaces, the tag map replaces whole; no ETag). A stale writer (a policy, Terraform, ``az tag``) writes a
snapshot it read earlier: only the tag map, or the whole PATCH. The documented defences are modelled as
they run: a guarded lease's guard re-checks after each stale write, and a closed lease's release watch does
for as long as a stale write can still carry it back (writes land within a bounded window after their read).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import responses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cicd_tools.storage.firewall import close_rule, open_rule, sweep
from cicd_tools.storage.guard import RuleGuard, watch_release
from cicd_tools.storage.lease_tags import TAG_PREFIX, Lease, parse_iso
from cicd_tools.storage.leases import covering_rule, network_acls, rule_index
from tests.unit.test_firewall import IP, REF, ArmAccount, FakeAccounts, FakeClock, _cli_env

PERMANENT = "20.30.40.50"  # base_acls' pre-existing rule
IPS = ("52.151.10.20", "52.151.10.20", "52.151.10.21", PERMANENT)  # collisions on one IP are the point
TTL = 3600
WINDOW = 6  # steps: a stale write lands at most this many steps after its read


def temporary_rules(fake: FakeAccounts) -> set[str]:
    return {r for r in fake.rules if r != PERMANENT}


def lease_tags(fake: FakeAccounts) -> dict[str, str]:
    return {k: v for k, v in fake.tags.items() if k.startswith(TAG_PREFIX)}


# --- a refused command changes nothing ------------------------------------------------------------------------


@responses.activate
def test_close_with_an_unknown_lease_id_exits_2_and_leaves_the_real_lease_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.cli.main import main

    state_path = _cli_env(monkeypatch, tmp_path)
    arm = ArmAccount()
    arm.install()
    common = ["--ci", "plain", "firewall"]
    assert main([*common, "open", "--ip", IP, "--lease-id", "real-1", "--no-probe", "--guard-interval", "0"]) == 0
    state_before = json.loads(state_path.read_text())
    account_before = copy.deepcopy(arm.fake.account)
    patches = len(arm.patch_bodies)
    capsys.readouterr()

    assert main([*common, "close", "--lease-id", "nope-123", "--ip", IP, "--grace", "0"]) == 2
    err = capsys.readouterr().err
    assert "real-1" in err and "firewall close --lease-id real-1" in err
    assert json.loads(state_path.read_text()) == state_before  # the real lease is still "open"
    assert arm.fake.account == account_before and len(arm.patch_bodies) == patches

    # The next plain close closes the real lease (it was not marked closed by the refused one).
    assert main([*common, "close", "--grace", "0"]) == 0
    assert IP not in arm.fake.rules and "cicd-fw-real-1" not in arm.fake.tags


# --- two leases on one IP and a tags-only stale write -----------------------------------------------------


def _lease(result: Any) -> Lease:
    return Lease(result.lease_id, result.ip, parse_iso(result.expires_at), result.preexisting)


@pytest.mark.parametrize("first_to_close", ["a", "b"])
def test_two_leases_on_one_ip_and_a_tags_only_stale_write_leave_no_rule_after_both_close(first_to_close: str) -> None:
    fake, clock = FakeAccounts(), FakeClock()
    rt = clock.runtime()
    snapshot = copy.deepcopy(fake.account)  # read before anyone opened
    a = open_rule(fake, REF, IP, "agent-a", TTL, runtime=rt)
    fake.apply({"tags": dict(snapshot["tags"])})  # `az tag` writes the old tag map: lease a's tag is gone
    b = open_rule(fake, REF, IP, "agent-b", TTL, runtime=rt)
    assert not a.preexisting and b.preexisting  # b cannot tell yet: the rule looks permanent
    leases = {"a": _lease(a), "b": _lease(b)}
    for name in (first_to_close, "b" if first_to_close == "a" else "a"):
        close_rule(fake, REF, leases[name].lease_id, fallback=leases[name], runtime=rt, grace=0)
    assert IP not in fake.rules and lease_tags(fake) == {}
    clock.t += 2 * TTL
    assert sweep(fake, REF, runtime=rt).swept == ()
    assert fake.rules == [PERMANENT]


def test_sweep_removes_a_rule_whose_handed_over_lease_was_abandoned() -> None:
    """Lease a added the rule and closed; b (which took the rule for permanent) crashed: sweep removes it."""
    fake, clock = FakeAccounts(), FakeClock()
    rt = clock.runtime()
    snapshot = copy.deepcopy(fake.account)
    a = open_rule(fake, REF, IP, "agent-a", TTL, runtime=rt)
    fake.apply({"tags": dict(snapshot["tags"])})
    open_rule(fake, REF, IP, "agent-b", TTL, runtime=rt)
    close_rule(fake, REF, "agent-a", fallback=_lease(a), runtime=rt, grace=0)
    assert IP in fake.rules  # b still holds it
    clock.t += 2 * TTL
    assert [x.lease_id for x in sweep(fake, REF, runtime=rt).swept] == ["agent-b"]
    assert fake.rules == [PERMANENT] and lease_tags(fake) == {}


def test_a_truly_pre_existing_rule_is_never_removed_by_two_leases() -> None:
    fake, clock = FakeAccounts(), FakeClock()
    rt = clock.runtime()
    a = open_rule(fake, REF, PERMANENT, "agent-a", TTL, runtime=rt)
    b = open_rule(fake, REF, PERMANENT, "agent-b", TTL, runtime=rt)
    assert a.preexisting and b.preexisting
    close_rule(fake, REF, "agent-a", fallback=_lease(a), runtime=rt, grace=0)
    close_rule(fake, REF, "agent-b", fallback=_lease(b), runtime=rt, grace=0)
    clock.t += 2 * TTL
    sweep(fake, REF, runtime=rt)
    assert fake.rules == [PERMANENT]


# --- the property test: random interleavings --------------------------------------------------------------


@dataclass
class Held:
    lease: Lease
    guarded: bool
    opened_step: int
    clobbered: bool = False  # an unguarded lease whose rule or tag a stale write removed (no defence: by design)
    closed_step: int | None = None
    guard: RuleGuard | None = None


@dataclass
class World:
    fake: FakeAccounts = field(default_factory=FakeAccounts)
    clock: FakeClock = field(default_factory=FakeClock)
    held: dict[str, Held] = field(default_factory=dict)
    snapshots: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    step: int = 0

    def defend(self) -> None:
        """What runs while a stale write lands: guards of live guarded leases, release watches of closed ones."""
        rt = self.clock.runtime()
        for held in self.held.values():
            if held.closed_step is None and held.guard is not None:
                held.guard.check_once()
            elif held.closed_step is not None and self.step - held.closed_step <= WINDOW:
                watch_release(self.fake, REF, held.lease.lease_id, held.lease, 0.5, interval=0.5, runtime=rt)

    def check(self) -> None:
        acls = network_acls(self.fake.account)
        assert PERMANENT in self.fake.rules, "a pre-existing rule was removed"
        holders = set()
        for held in self.held.values():
            if held.closed_step is not None:
                continue
            holders.add(held.lease.ip)
            if not held.clobbered:
                assert rule_index(acls, held.lease.ip) is not None or covering_rule(acls, held.lease.ip), (
                    f"live lease {held.lease.lease_id} has no rule {held.lease.ip}")
        leaked = temporary_rules(self.fake) - holders
        assert not leaked, f"rule(s) {leaked} outlived all their leases"


# Weighted towards what makes leases collide: opens and closes on few ids and IPs, stale writes of recent reads.
KINDS = ("open", "open", "open", "close", "close", "close", "stale_tags", "stale_tags", "stale_full", "close_wrong",
         "sweep")
OPS = st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(1, WINDOW), st.booleans()).map(
    lambda t: {"open": (t[0], t[1], t[2] % len(IPS), t[3]), "close": (t[0], t[1]), "stale_tags": (t[0], t[2]),
               "stale_full": (t[0], t[2])}.get(t[0], (t[0],)))
# The case of issue 18 (agent b takes the rule agent a added for permanent after `az tag` wrote an old tag map).
ISSUE_CASE = [("open", 0, 0, False), ("stale_tags", 2), ("open", 1, 0, False), ("close", 0), ("close", 1)]


def _apply(world: World, op: tuple[Any, ...]) -> None:
    rt = world.clock.runtime()
    fake = world.fake
    kind = op[0]
    if kind == "open":
        lease_id = f"lease-{op[1]}"
        if lease_id in world.held:
            return
        opened = open_rule(fake, REF, IPS[op[2]], lease_id, TTL, runtime=rt, grace=0)
        held = Held(_lease(opened), op[3], world.step)
        if held.guarded:
            held.guard = RuleGuard(fake, REF, held.lease, runtime=rt)
        world.held[lease_id] = held
    elif kind == "close":
        held_or_none = world.held.get(f"lease-{op[1]}")
        if held_or_none is None or held_or_none.closed_step is not None:
            return
        close_rule(fake, REF, held_or_none.lease.lease_id, fallback=held_or_none.lease, runtime=rt, grace=0)
        held_or_none.closed_step = world.step
    elif kind == "close_wrong":
        before = copy.deepcopy(fake.account)
        result = close_rule(fake, REF, "nope-123", runtime=rt, grace=0)
        assert result.nothing_to_do and fake.account == before, "a refused close changed the account"
    elif kind == "sweep":
        sweep(fake, REF, runtime=rt)
    else:  # a write computed from the account as it was op[1] steps ago (every step is a possible read)
        snap = world.snapshots[max(0, len(world.snapshots) - op[1])][1]
        if kind == "stale_tags":
            fake.apply({"tags": dict(snap["tags"])})
        else:
            fake.apply({"properties": {"networkAcls": copy.deepcopy(snap["properties"]["networkAcls"])},
                        "tags": dict(snap["tags"])})
        # An unguarded lease (`--guard-interval 0`) has no defence against a stale write that drops its rule or its
        # tag (without its tag, the next release watch of another lease on the IP takes the rule): documented, by
        # design. Guarded leases (the default) get both back from their guard and stay held to the invariant.
        acls = network_acls(fake.account)
        for held in world.held.values():
            if not held.guarded and held.closed_step is None and (
                    rule_index(acls, held.lease.ip) is None or TAG_PREFIX + held.lease.lease_id not in fake.tags):
                held.clobbered = True
        world.defend()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(ISSUE_CASE, [False, False, False])
@example([("open", 0, 0, True), ("stale_tags", 2), ("open", 1, 1, False), ("close", 0)], [False, True, False])
# found by random generation: lease-1's tag dropped by a stale tags-only write, then lease-0's release watch
@example([("open", 0, 1, False), ("open", 1, 1, False), ("close", 0), ("stale_tags", 3)], [False, False, False])
@example([("open", 0, 1, False), ("open", 1, 1, True), ("close", 0), ("stale_tags", 3)], [False, False, False])
@given(st.lists(OPS, min_size=1, max_size=24), st.lists(st.booleans(), min_size=3, max_size=3))
def test_random_interleavings_keep_the_lease_invariants(ops: list[tuple[Any, ...]], crash: list[bool]) -> None:
    world = World()
    for op in ops:
        world.step += 1
        world.snapshots.append((world.step, copy.deepcopy(world.fake.account)))
        _apply(world, op)
        world.check()
    # The end: every lease closes, except guarded ones that crash (their guard kept the tag); after the
    # expiry, sweep leaves exactly the pre-existing rules and no lease tag.
    rt = world.clock.runtime()
    for i, held in enumerate(world.held.values()):
        if held.closed_step is None and not (held.guarded and crash[i]):
            close_rule(world.fake, REF, held.lease.lease_id, fallback=held.lease, runtime=rt, grace=0)
    world.clock.t += 2 * TTL + 1
    sweep(world.fake, REF, runtime=rt)
    assert world.fake.rules == [PERMANENT], "a temporary rule outlived all its leases"
    assert lease_tags(world.fake) == {}
