"""The sandbox firewall's propagation realism (AZURE_FACTS.md §4: not monotonic) and the Storage RP's validation
of carried-back resourceAccessRules / virtualNetworkRules, without sockets."""

from __future__ import annotations

import pytest

from cicd_tools.sandbox.layout import SandboxLayout
from cicd_tools.sandbox.server import HttpError
from cicd_tools.sandbox.state import CloudState
from cicd_tools.sandbox.storage.arm_storage import validate_network_acls
from tests.unit.test_sandbox_state import ACCOUNT, AGENT, FakeClock, rules

LAYOUT = SandboxLayout()


def allows(state: CloudState) -> bool:
    return state.network_allows(ACCOUNT, AGENT, private_endpoint=False)


def test_a_new_rule_flaps_during_the_flap_window_then_admits_for_good() -> None:
    clock = FakeClock()
    state = CloudState(LAYOUT, propagation_delay=2.0, clock=clock)
    state.set_propagation(flap_window=5.0, flap_refuse=0.5, seed=3)
    state.update_account(ACCOUNT, network_acls=rules(AGENT))
    clock.now += 1.0
    assert not any(allows(state) for _ in range(20))  # before the delay: always refused
    clock.now += 2.0
    verdicts = [allows(state) for _ in range(200)]
    assert 0 < sum(verdicts) < 200  # within the window: admitted and refused, request by request
    clock.now += 5.0
    assert all(allows(state) for _ in range(50))


def test_a_removed_rule_and_a_default_action_change_lag_behind_arm() -> None:
    clock = FakeClock()
    state = CloudState(LAYOUT, propagation_delay=0.0, clock=clock)
    state.set_propagation(removal_delay=4.0, default_action_delay=6.0)
    state.update_account(ACCOUNT, network_acls=rules(AGENT))
    assert allows(state)
    state.update_account(ACCOUNT, network_acls=rules())
    clock.now += 3.9
    assert allows(state)  # ARM says removed; the data plane still admits
    clock.now += 0.2
    assert not allows(state)
    state.update_account(ACCOUNT, network_acls={"defaultAction": "Allow"})
    clock.now += 5.0
    assert not allows(state)  # still Deny in effect
    clock.now += 1.1
    assert allows(state)


def test_bad_propagation_settings_are_refused() -> None:
    state = CloudState(LAYOUT)
    with pytest.raises(ValueError):
        state.set_propagation(flap_refuse=1.5)
    with pytest.raises(ValueError):
        state.set_propagation(removal_delay=-1.0)


BLOB_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"


def test_role_assignments_take_effect_after_the_role_delay_and_linger_after_removal() -> None:
    # Azure RBAC: assignment changes take a while to take effect, both ways (Troubleshoot Azure RBAC).
    clock = FakeClock()
    state = CloudState(LAYOUT, propagation_delay=0.0, clock=clock)
    state.set_propagation(role_delay=3.0, role_removal_delay=5.0)
    scope, pid = LAYOUT.account_id(ACCOUNT), "b7f5c7a1-0000-4000-8000-00000000beef"
    state.assign_role(pid, "Storage Blob Data Contributor", scope)
    clock.now += 2.9
    assert not state.authorize(pid, scope, BLOB_WRITE, data=True)  # ARM lists it; it grants nothing yet
    clock.now += 0.2
    assert state.authorize(pid, scope, BLOB_WRITE, data=True)
    assert state.remove_role(pid, "Storage Blob Data Contributor", scope) == 1
    clock.now += 4.9
    assert state.authorize(pid, scope, BLOB_WRITE, data=True)  # removed, still granting
    clock.now += 0.2
    assert not state.authorize(pid, scope, BLOB_WRITE, data=True)


def test_by_default_role_changes_are_instant_and_preprovisioned_roles_grant_at_once() -> None:
    clock = FakeClock()
    state = CloudState(LAYOUT, clock=clock)
    scope, pid = LAYOUT.account_id(ACCOUNT), "b7f5c7a1-0000-4000-8000-00000000beef"
    state.assign_role(pid, "Storage Blob Data Contributor", scope)
    assert state.authorize(pid, scope, BLOB_WRITE, data=True)
    state.remove_role(pid, "Storage Blob Data Contributor", scope)
    assert not state.authorize(pid, scope, BLOB_WRITE, data=True)
    state.set_propagation(role_delay=600.0)
    ci = state.assignments()[0]
    assert state.authorize(ci.principal_id, ci.scope, "Microsoft.Storage/storageAccounts/read")


def test_the_slow_propagation_scenario_sets_field_timings_and_reset_makes_them_instant_again() -> None:
    from cicd_tools.sandbox import process
    from cicd_tools.sandbox.world import scenarios

    class Hub:
        layout = LAYOUT
        state = CloudState(LAYOUT, propagation_delay=0.0)

    scenarios.apply_scenario(Hub, "slow-propagation")  # type: ignore[arg-type]
    applied = Hub.state.propagation
    # RBAC "up to 10 minutes": minutes, not seconds; firewall rules tens of seconds, removals lag too.
    assert 60 <= applied.role_delay <= 600 and 60 <= applied.role_removal_delay <= 600
    assert 10 <= applied.delay <= 60 and applied.removal_delay > 0
    assert "slow-propagation" in process.SCENARIOS
    Hub.state.reset()
    assert (Hub.state.propagation.role_delay, Hub.state.propagation.removal_delay) == (0.0, 0.0)


def test_negative_role_delays_are_refused() -> None:
    with pytest.raises(ValueError):
        CloudState(LAYOUT).set_propagation(role_delay=-1.0)


DEFENDER = {
    "tenantId": "72f988bf-0000-4000-8000-00000000cafe",
    "resourceId": "/subscriptions/5a4db0c0-0000-4000-8000-000000000001/providers/Microsoft.Security/datascanners"
    "/StorageDataScanner",
}


def test_carried_back_resource_access_rules_are_validated_like_the_storage_rp() -> None:
    workspace = {"tenantId": DEFENDER["tenantId"], "resourceId": "/subscriptions/s/resourceGroups/rg/providers"
                 "/Microsoft.MachineLearningServices/workspaces/w"}
    assert validate_network_acls({"resourceAccessRules": [DEFENDER, workspace]})["resourceAccessRules"] == [
        DEFENDER, workspace,
    ]
    bad_cases = [
        ({**workspace, "tenantId": "t"}, "tenantId"),
        ({**workspace, "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/"
                                     "privateEndpoints/pe"}, "resourceId"),  # not a trusted-access type
        ({**workspace, "resourceId": "/subscriptions/x/workspaces/w"}, "resourceId"),
    ]
    for rule, field in bad_cases:
        with pytest.raises(HttpError) as info:
            validate_network_acls({"resourceAccessRules": [rule]})
        assert info.value.response.status == 400 and field.encode() in info.value.response.body
    with pytest.raises(HttpError):  # the field regression: this RP version refuses Defender's own rule
        validate_network_acls({"resourceAccessRules": [DEFENDER]}, frozenset({"microsoft.security/datascanners"}))
    with pytest.raises(HttpError):
        validate_network_acls({"virtualNetworkRules": [{"id": "/subscriptions/s/vnet"}]})
