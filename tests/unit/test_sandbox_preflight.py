"""The sandbox's read-only preflight resources answer like ARM (no network): role-assignment filters, the AKS
side of the chain, explicit 501s for writes, scenarios and break switches."""

from __future__ import annotations

import json
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.sandbox import process
from cicd_tools.sandbox.aks import containerservice, k8s_config
from cicd_tools.sandbox.identity import authorization, managed_identity
from cicd_tools.sandbox.identity.identity import mint_token, principal_oid, signing_key
from cicd_tools.sandbox.layout import SandboxLayout
from cicd_tools.sandbox.server import HttpError, Request, Response, Router
from cicd_tools.sandbox.state import CloudState
from cicd_tools.sandbox.world import scenarios
from cicd_tools.sandbox.world.chain import STREAM_AUTH, job_storage_access
from cicd_tools.support.errors import ConfigError

ARM = "https://127.0.0.1:4443"
KEY = signing_key("unit-test-sandbox-secret")


class FakeHub:
    signing_key = KEY

    def __init__(self) -> None:
        self.layout = SandboxLayout()
        self.state = CloudState(self.layout, propagation_delay=0)

    @property
    def arm_endpoint(self) -> str:
        return ARM


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def router() -> Router:
    r = Router()
    for module in (authorization, containerservice, k8s_config, managed_identity, scenarios):
        r.include(module.routes)
    return r


def call(router: Router, hub: FakeHub, method: str, path: str, query: dict[str, str] | None = None,
         principal: str = "ci-pipeline") -> tuple[int, Any]:
    headers = Message()
    headers["Authorization"] = f"Bearer {mint_token(principal, ARM, key=KEY)}"
    route, groups, _ = router.resolve(method, path)
    assert route is not None, f"no route for {method} {path}"
    req = Request(method, path, [("api-version", "2022-04-01"), *(query or {}).items()], headers, b"",
                  "127.0.0.1", groups)
    try:
        response: Response = route.handler(req, hub)  # type: ignore[arg-type]
    except HttpError as err:
        response = err.response
    return response.status, json.loads(response.body) if response.body else None


def assignments(router: Router, hub: FakeHub, scope: str, flt: str | None = None) -> list[tuple[str, str]]:
    status, body = call(router, hub, "GET", f"{scope}/providers/Microsoft.Authorization/roleAssignments",
                        {"$filter": flt} if flt else None)
    assert status == 200, body
    return sorted((a["properties"]["principalId"], a["properties"]["scope"]) for a in body["value"])


def test_at_scope_lists_assignments_at_and_above_but_not_below(router: Router, hub: FakeHub) -> None:
    lay = hub.layout
    above = assignments(router, hub, lay.resource_group_id, "atScope()")
    everything = assignments(router, hub, lay.resource_group_id)
    assert [s for _, s in above] == [lay.resource_group_id]  # only CI's Contributor sits on the group itself
    assert len(everything) == 6  # no filter: the group's and every resource's below it


def test_assigned_to_keeps_one_principal_and_the_scopes_that_apply(router: Router, hub: FakeHub) -> None:
    lay = hub.layout
    factory = principal_oid(lay.factory_principal)
    found = assignments(router, hub, lay.account_id(lay.storage_account), f"assignedTo('{factory}')")
    assert found == [(factory, lay.account_id(lay.storage_account))]


def test_an_unsupported_filter_is_refused_like_arm(router: Router, hub: FakeHub) -> None:
    status, body = call(router, hub, "GET", f"{hub.layout.resource_group_id}/providers/Microsoft.Authorization/"
                        "roleAssignments", {"$filter": "roleName eq 'Owner'"})
    assert status == 400 and body["error"]["code"] == "UnsupportedQuery"


def test_assignments_carry_created_on_and_the_builtin_role_definition_id(router: Router, hub: FakeHub) -> None:
    hub.state.assign_role("ci-pipeline", "Reader", hub.layout.workspace_id, created_on="2026-06-01T10:00:00Z")
    _, body = call(router, hub, "GET", f"{hub.layout.workspace_id}/providers/Microsoft.Authorization/roleAssignments",
                   {"$filter": "atScope()"})
    reader = next(a for a in body["value"] if a["properties"]["roleDefinitionId"].endswith(
        "acdd72a7-3385-48ef-bd42-f606fba81ae7"))
    assert reader["properties"]["createdOn"] == "2026-06-01T10:00:00Z"
    status, definition = call(router, hub, "GET", reader["properties"]["roleDefinitionId"])
    assert status == 200 and definition["properties"]["roleName"] == "Reader"
    assert definition["properties"]["permissions"][0]["actions"] == ["*/read"]


def test_a_principal_without_a_role_cannot_list_assignments(router: Router, hub: FakeHub) -> None:
    status, body = call(router, hub, "GET", f"{hub.layout.resource_group_id}/providers/Microsoft.Authorization/"
                        "roleAssignments", principal="stranger")
    assert status == 403 and body["error"]["code"] == "AuthorizationFailed"


def test_writes_answer_an_explicit_not_implemented(router: Router, hub: FakeHub) -> None:
    status, body = call(router, hub, "PUT", f"{hub.layout.resource_group_id}/providers/Microsoft.Authorization/"
                        "roleAssignments/0b1c")
    assert status == 501 and "PUT" in body["error"]["message"] and "roleAssignments/0b1c" in body["error"]["message"]
    status, _ = call(router, hub, "PATCH", hub.layout.aks_cluster_id)
    assert status == 501


def test_cluster_extension_and_identity_follow_the_topology_switches(router: Router, hub: FakeHub) -> None:
    lay = hub.layout
    _, cluster = call(router, hub, "GET", lay.aks_cluster_id)
    issuer = cluster["properties"]["oidcIssuerProfile"]["issuerURL"]
    _, creds = call(router, hub, "GET", f"{lay.aks_identity_id}/federatedIdentityCredentials")
    assert {c["properties"]["issuer"] for c in creds["value"]} == {issuer}
    scenarios.apply_scenario(hub, "aks-identity-gap")  # type: ignore[arg-type]
    _, cluster = call(router, hub, "GET", lay.aks_cluster_id)
    assert cluster["properties"]["oidcIssuerProfile"] == {"enabled": False}
    assert cluster["properties"]["securityProfile"]["workloadIdentity"]["enabled"] is False
    _, extensions = call(router, hub, "GET", f"{lay.aks_cluster_id}/providers/Microsoft.KubernetesConfiguration/"
                         "extensions")
    assert "identityType" not in extensions["value"][0]["properties"]["configurationSettings"]
    _, creds = call(router, hub, "GET", f"{lay.aks_identity_id}/federatedIdentityCredentials")
    assert creds["value"] == []


def test_job_storage_access_is_denied_in_both_scenarios_and_on_each_aks_break(hub: FakeHub) -> None:
    compute = hub.layout.compute
    assert job_storage_access(hub, compute) is None  # type: ignore[arg-type]
    scenarios.break_link(hub, "aks")  # type: ignore[arg-type]
    denied = job_storage_access(hub, compute)  # type: ignore[arg-type]
    assert denied is not None and denied.code == STREAM_AUTH and "identityType" in denied.message
    assert job_storage_access(hub, "cpu-cluster") is None  # type: ignore[arg-type]  # not the AKS compute

    fresh = FakeHub()
    scenarios.apply_scenario(fresh, "key-datastores")  # type: ignore[arg-type]
    denied = job_storage_access(fresh, "cpu-cluster")  # type: ignore[arg-type]
    assert denied is not None and "Key based authentication is not permitted" in denied.message


def test_extension_identity_without_a_data_role_is_denied(hub: FakeHub) -> None:
    lay = hub.layout
    hub.state.remove_role(lay.aks_identity, "Storage Blob Data Contributor")
    denied = job_storage_access(hub, lay.compute)  # type: ignore[arg-type]
    assert denied is not None and "AuthorizationPermissionMismatch" in denied.message


def test_unknown_scenario_and_link_are_refused() -> None:
    with pytest.raises(ValueError, match="known: aks-identity-gap, key-datastores"):
        scenarios.apply_scenario(FakeHub(), "everything-broken")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown link"):
        scenarios.break_link(FakeHub(), "dns")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown scenario"):
        process.up(Path("/nonexistent-state-dir"), scenario="everything-broken")


def test_the_cli_names_the_same_scenarios_and_links_as_the_library() -> None:
    from cicd_tools.cli.preflight import LINKS
    from cicd_tools.preflight.runner import LINKS as RUNNER_LINKS

    assert tuple(scenarios.SCENARIOS) == process.SCENARIOS
    assert LINKS == RUNNER_LINKS
    assert set(scenarios.BREAKS) == set(LINKS)
