"""The sandbox's cloud state without sockets: rule clocks, firewall verdicts, roles, faults, validation."""

from __future__ import annotations

import shlex

import pytest

from cicd_tools.sandbox.layout import BLOB_READ, BLOB_WRITE, SandboxLayout, resolve_principal
from cicd_tools.sandbox.process import env_lines
from cicd_tools.sandbox.server import HttpError
from cicd_tools.sandbox.state import CloudState
from cicd_tools.sandbox.storage.arm_storage import validate_ip_rule, validate_network_acls

LAYOUT = SandboxLayout()
ACCOUNT = LAYOUT.storage_account
AGENT = "52.151.10.20"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> CloudState:
    return CloudState(LAYOUT, propagation_delay=10.0, clock=clock)


def rules(*values: str) -> dict[str, object]:
    return {"ipRules": [{"value": v, "action": "Allow"} for v in values]}


def test_a_new_rule_admits_traffic_only_after_the_propagation_delay(state: CloudState, clock: FakeClock) -> None:
    state.update_account(ACCOUNT, network_acls=rules(AGENT))
    assert not state.network_allows(ACCOUNT, AGENT, private_endpoint=False)
    clock.now += 9.9
    assert not state.network_allows(ACCOUNT, AGENT, private_endpoint=False)
    clock.now += 0.1
    assert state.network_allows(ACCOUNT, AGENT, private_endpoint=False)


def test_a_rule_kept_by_a_later_patch_keeps_its_clock(state: CloudState, clock: FakeClock) -> None:
    state.update_account(ACCOUNT, network_acls=rules(AGENT))
    clock.now += 10
    state.update_account(ACCOUNT, network_acls=rules(AGENT, "20.1.1.1"))
    assert state.network_allows(ACCOUNT, AGENT, private_endpoint=False)
    assert not state.network_allows(ACCOUNT, "20.1.1.1", private_endpoint=False)


def test_a_removed_and_re_added_rule_restarts_its_clock(state: CloudState, clock: FakeClock) -> None:
    state.update_account(ACCOUNT, network_acls=rules(AGENT))
    clock.now += 10
    state.update_account(ACCOUNT, network_acls=rules())
    state.update_account(ACCOUNT, network_acls=rules(f"{AGENT}"))
    assert not state.network_allows(ACCOUNT, AGENT, private_endpoint=False)


def test_a_propagated_preset_is_in_effect_at_once(state: CloudState) -> None:
    state.update_account(ACCOUNT, network_acls=rules("52.151.0.0/16"), propagated=True)
    assert state.network_allows(ACCOUNT, AGENT, private_endpoint=False)
    assert not state.network_allows(ACCOUNT, "52.152.0.1", private_endpoint=False)


def test_default_action_allow_admits_any_public_ip(state: CloudState) -> None:
    state.update_account(ACCOUNT, network_acls={"defaultAction": "Allow"})
    assert state.network_allows(ACCOUNT, "20.9.9.9", private_endpoint=False)


def test_public_network_access_disabled_refuses_public_traffic_but_not_the_private_endpoint(
    state: CloudState,
) -> None:
    state.update_account(ACCOUNT, network_acls={"defaultAction": "Allow"}, public_network_access="Disabled")
    assert not state.network_allows(ACCOUNT, AGENT, private_endpoint=False)
    assert state.network_allows(ACCOUNT, "10.20.1.4", private_endpoint=True)


def test_a_patch_replaces_only_the_network_fields_it_carries(state: CloudState) -> None:
    state.update_account(ACCOUNT, network_acls=rules("20.1.1.1", "20.2.2.2"))
    account = state.update_account(ACCOUNT, network_acls={"defaultAction": "Allow"})
    assert [r["value"] for r in account.network_acls["ipRules"]] == ["20.1.1.1", "20.2.2.2"]
    account = state.update_account(ACCOUNT, network_acls=rules("20.3.3.3"))
    assert [r["value"] for r in account.network_acls["ipRules"]] == ["20.3.3.3"]
    assert account.network_acls["defaultAction"] == "Allow"


def test_the_ci_identity_has_management_and_data_roles_on_the_account(state: CloudState) -> None:
    ci, account = resolve_principal("ci-pipeline"), LAYOUT.account_id(ACCOUNT)
    assert state.authorize(ci, account, "Microsoft.Storage/storageAccounts/write")
    assert state.authorize(ci, account, BLOB_WRITE, data=True)


def test_contributor_grants_no_blob_data_access(state: CloudState) -> None:
    ci, account = resolve_principal("ci-pipeline"), LAYOUT.account_id(ACCOUNT)
    state.remove_role("ci-pipeline", "Storage Blob Data Contributor")
    assert not state.authorize(ci, account, BLOB_READ, data=True)
    assert state.authorize(ci, account, "Microsoft.Storage/storageAccounts/read")


def test_the_factory_identity_reads_but_does_not_write_blobs(state: CloudState) -> None:
    factory, account = resolve_principal("adf-factory"), LAYOUT.account_id(ACCOUNT)
    assert state.authorize(factory, account, BLOB_READ, data=True)
    assert not state.authorize(factory, account, BLOB_WRITE, data=True)
    assert not state.authorize(factory, account, "Microsoft.Storage/storageAccounts/write")


def test_an_assignment_on_one_account_does_not_cover_another(state: CloudState) -> None:
    state.assign_role("worker", "Storage Blob Data Reader", LAYOUT.account_id(ACCOUNT))
    other = LAYOUT.account_id(ACCOUNT + "x")
    assert not state.authorize(resolve_principal("worker"), other, BLOB_READ, data=True)


def test_assigning_an_unknown_role_is_refused(state: CloudState) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        state.assign_role("ci-pipeline", "Storage Blob Data Wizard", LAYOUT.resource_group_id)


def test_a_fault_fires_count_times_on_matching_requests_then_disarms(state: CloudState) -> None:
    state.add_fault(service="blob", path="comp=list", method="GET", status=503, count=2)
    assert state.take_fault("arm", "GET", "/x?comp=list") is None
    assert state.take_fault("blob", "PUT", "/x?comp=list") is None
    assert state.take_fault("blob", "GET", "/a?comp=list") is not None
    assert state.take_fault("blob", "GET", "/a?comp=list") is not None
    assert state.take_fault("blob", "GET", "/a?comp=list") is None
    assert [(f.hits, f.count) for f in state.faults()] == [(2, 0)]


def test_reset_brings_back_the_preprovisioned_cloud(state: CloudState) -> None:
    state.update_account(ACCOUNT, network_acls={"defaultAction": "Allow"}, tags={"a": "b"})
    state.set_propagation_delay(1)
    state.add_fault(service="*", path=".*", count=None)
    state.reset()
    account = state.account(ACCOUNT)
    assert (account.network_acls["defaultAction"], account.tags, account.allow_shared_key_access) == ("Deny", {}, False)
    assert state.propagation_delay == 10.0
    assert state.faults() == []


@pytest.mark.parametrize("value", ["20.1.2.3", "20.1.2.0/24", "20.1.2.0/30", "8.8.0.0/16"])
def test_public_ipv4_rules_are_accepted(value: str) -> None:
    assert validate_ip_rule(value) == value


@pytest.mark.parametrize("value", ["10.0.0.1", "192.168.1.0/24", "172.16.5.5", "127.0.0.1", "169.254.1.1",
                                   "100.64.0.1", "0.0.0.0", "1.2.3.4/32", "1.2.3.4/31", "2001:db8::1",
                                   "not-an-ip", "", "224.0.0.1"])
def test_private_reserved_host_prefix_and_malformed_rules_are_refused(value: str) -> None:
    with pytest.raises(HttpError) as info:
        validate_ip_rule(value)
    assert info.value.response.status == 400
    assert b"InvalidValuesForRequestParameters" in info.value.response.body


def test_more_than_400_ip_rules_are_refused() -> None:
    too_many = [{"value": f"20.0.{i // 250}.{i % 250 + 1}"} for i in range(401)]
    with pytest.raises(HttpError) as info:
        validate_network_acls({"ipRules": too_many})
    assert b"networkAcls.ipRules[]" in info.value.response.body


def test_an_unknown_default_action_is_refused() -> None:
    with pytest.raises(HttpError):
        validate_network_acls({"defaultAction": "Maybe"})


def test_env_lines_are_shell_quoted() -> None:
    text = env_lines({"A": "plain", "B": "it's got spaces; $and `stuff`"})
    assert [shlex.split(line) for line in text.splitlines()] == [
        ["export", "A=plain"], ["export", "B=it's got spaces; $and `stuff`"]]
