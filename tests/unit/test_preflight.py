"""Preflight links over the real azure-core ARM pipeline with ``responses`` for precise answers.

The factory side (factories, integration runtimes, managed private endpoints: Microsoft.DataFactory
2018-06-01 shapes) is only exercised here until the sandbox serves it.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses

from cicd_tools.cli.main import main
from cicd_tools.preflight import compute, factory
from cicd_tools.preflight.arm import ArmReadError, PipelineArmReader
from cicd_tools.preflight.context import Context, Targets
from cicd_tools.preflight.model import Check, LinkResult, PreflightReport
from cicd_tools.preflight.rbac import AUTHZ, Rbac, parse_time, permits
from cicd_tools.sandbox.identity.identity import SandboxCredential
from cicd_tools.support.errors import AuthenticationFailed, AzureError, Throttled

ARM = "https://management.example"
SUB = "5a4db0c0-0000-4000-8000-000000000001"
REPO_ADF = Path(__file__).resolve().parents[2] / "adf"
FACTORY_PID = "11111111-2222-4333-8444-555555555555"
TARGETS = Targets(subscription_id=SUB, resource_group="rg", storage_account="pointersa", container="ml-globals",
                  workspace="mlw", compute="aks-gpu", factory="adf", adf_dir=REPO_ADF)
DEFS = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions"
BLOB_READER = f"{DEFS}/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
DATA_SCIENTIST = f"{DEFS}/f6c7c914-8db3-469d-8ca1-694a8f32e121"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def reader(retries: int = 0) -> PipelineArmReader:
    return PipelineArmReader(SandboxCredential("ci-pipeline"), ARM, retries=retries)


def context(targets: Targets = TARGETS) -> Context:
    return Context(reader(), targets, NOW)


def get(path: str, body: Any, status: int = 200) -> None:
    responses.add(responses.GET, ARM + path, json=body, status=status)


def definition(path: str, name: str, actions: list[str], data_actions: list[str],
               not_actions: tuple[str, ...] = ()) -> None:
    get(path, {"id": path, "properties": {"roleName": name, "permissions": [
        {"actions": actions, "notActions": list(not_actions), "dataActions": data_actions, "notDataActions": []}]}})


def assignment(principal: str, definition_id: str, scope: str, created: str = "2026-01-05T09:00:00Z") -> dict[str, Any]:
    return {"properties": {"principalId": principal, "roleDefinitionId": definition_id, "scope": scope,
                           "createdOn": created}}


def healthy_factory(*, endpoint_status: str = "Approved", ir_type: str = "Managed",
                    identity: dict[str, Any] | None = None) -> None:
    t = TARGETS
    get(t.factory_id, {"name": "adf", "identity": identity if identity is not None else
                       {"type": "SystemAssigned", "principalId": FACTORY_PID, "tenantId": "t"}})
    get(f"{t.container_scope}/providers/Microsoft.Authorization/roleAssignments",
        {"value": [assignment(FACTORY_PID, BLOB_READER, t.account_id)]})
    get(f"{t.workspace_id}/providers/Microsoft.Authorization/roleAssignments",
        {"value": [assignment(FACTORY_PID, DATA_SCIENTIST, t.workspace_id)]})
    definition(BLOB_READER, "Storage Blob Data Reader", [],
               ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"])
    definition(DATA_SCIENTIST, "AzureML Data Scientist", ["Microsoft.MachineLearningServices/workspaces/*/read",
               "Microsoft.MachineLearningServices/workspaces/*/write"], [],
               not_actions=("Microsoft.MachineLearningServices/workspaces/delete",))
    runtime_props: dict[str, Any] = {"type": ir_type}
    if ir_type == "Managed":
        runtime_props["managedVirtualNetwork"] = {"type": "ManagedVirtualNetworkReference",
                                                  "referenceName": "default"}
    get(f"{t.factory_id}/integrationRuntimes", {"value": [{"name": "ManagedVnetIR", "properties": runtime_props}]})
    get(f"{t.factory_id}/managedVirtualNetworks/default/managedPrivateEndpoints", {"value": [{
        "name": "mpe-mlstorage-blob",
        "properties": {"privateLinkResourceId": t.account_id, "groupId": "blob", "provisioningState": "Succeeded",
                       "connectionState": {"status": endpoint_status, "description": "", "actionsRequired": ""}}}]})


def by_id(link: LinkResult) -> dict[str, Check]:
    return {c.id: c for c in link.checks}


@responses.activate
def test_factory_link_is_ok_when_identity_roles_ir_and_approved_endpoint_are_there() -> None:
    healthy_factory()
    link = factory.check(context())
    assert link.status == "ok", link.to_dict()
    checks = by_id(link)
    assert "'Storage Blob Data Reader' at" in checks["factory-blob-read"].evidence
    assert "mpe-mlstorage-blob: Approved" in checks["factory-private-endpoint"].evidence
    assert {call.request.method for call in responses.calls} == {"GET"}


@responses.activate
def test_a_pending_managed_private_endpoint_fails_with_the_approve_command() -> None:
    healthy_factory(endpoint_status="Pending")
    checks = by_id(factory.check(context()))
    assert checks["factory-private-endpoint"].status == "fail"
    assert "not approved: mpe-mlstorage-blob: Pending" in checks["factory-private-endpoint"].evidence
    assert "private-endpoint-connection approve" in str(checks["factory-private-endpoint"].fix)
    assert [c.id for c in checks.values() if c.status == "fail"] == ["factory-private-endpoint"]


@responses.activate
def test_a_self_hosted_runtime_is_not_a_managed_vnet_ir() -> None:
    healthy_factory(ir_type="SelfHosted")
    checks = by_id(factory.check(context()))
    assert checks["factory-managed-ir"].status == "fail"
    assert "ManagedVnetIR (SelfHosted)" in checks["factory-managed-ir"].evidence


@responses.activate
def test_a_factory_without_managed_identity_fails_with_the_identity_fix() -> None:
    healthy_factory(identity={})
    link = factory.check(context())
    assert link.status == "fail" and "identity.type=SystemAssigned" in str(link.fix)


@responses.activate
def test_factory_without_blob_role_fails_naming_the_roles_that_do_apply() -> None:
    healthy_factory()
    only_workspace_role = {"value": [assignment(FACTORY_PID, DATA_SCIENTIST, TARGETS.group_id)]}
    responses.replace(responses.GET, f"{ARM}{TARGETS.container_scope}{AUTHZ}/roleAssignments", json=only_workspace_role)
    check = by_id(factory.check(context()))["factory-blob-read"]
    assert check.status == "fail"
    assert "roles that apply: AzureML Data Scientist" in check.evidence
    assert f'--role "Storage Blob Data Reader" --scope {TARGETS.container_scope}' in str(check.fix)


@responses.activate
def test_connect_via_at_the_activity_root_fails_through_adf_lint(tmp_path: Path) -> None:
    healthy_factory()
    adf = tmp_path / "adf"
    shutil.copytree(REPO_ADF, adf)
    pipeline = adf / "pipeline" / "pl_run_aml_job.json"
    doc = json.loads(pipeline.read_text())
    web = next(a for a in doc["properties"]["activities"] if "connectVia" in a.get("typeProperties", {}))
    web["connectVia"] = web["typeProperties"].pop("connectVia")
    pipeline.write_text(json.dumps(doc))
    targets = Targets(**{**TARGETS.__dict__, "adf_dir": adf})
    check = by_id(factory.check(context(targets)))["factory-connect-via"]
    assert check.status == "fail" and "[ADF010]" in check.evidence


@responses.activate
def test_unreadable_role_assignments_say_they_cannot_tell_instead_of_failing() -> None:
    healthy_factory()
    denied = {"error": {"code": "AuthorizationFailed", "message": "no"}}
    responses.replace(responses.GET, f"{ARM}{TARGETS.workspace_id}{AUTHZ}/roleAssignments", json=denied, status=403)
    check = by_id(factory.check(context()))["factory-workspace-jobs"]
    assert check.status == "warn" and "cannot tell" in check.evidence and "403 AuthorizationFailed" in check.evidence


def test_permissions_honour_not_actions_and_keep_data_actions_apart() -> None:
    contributor = [{"actions": ["*"], "notActions": ["Microsoft.Authorization/*/Write"], "dataActions": [],
                    "notDataActions": []}]
    assert permits(contributor, "Microsoft.Storage/storageAccounts/write", data=False)
    assert not permits(contributor, "Microsoft.Authorization/roleAssignments/write", data=False)
    assert not permits(contributor, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", data=True)


@responses.activate
def test_a_grant_through_a_group_is_reported_as_such() -> None:
    group = "99999999-0000-4000-8000-000000000000"
    get(f"{TARGETS.workspace_id}/providers/Microsoft.Authorization/roleAssignments",
        {"value": [assignment(group, DATA_SCIENTIST, TARGETS.group_id),
                   assignment("someone-else", DATA_SCIENTIST, f"{TARGETS.group_id}/providers/X/y/z")]})
    definition(DATA_SCIENTIST, "AzureML Data Scientist", ["Microsoft.MachineLearningServices/workspaces/*"], [])
    verdict = Rbac(reader()).check(FACTORY_PID, TARGETS.workspace_id,
                                   ("Microsoft.MachineLearningServices/workspaces/jobs/write",), data=False)
    assert verdict.granted and verdict.grants[0].via_group
    assert f"through group {group}" in verdict.grants[0].describe()
    assert "assignedTo" in str(responses.calls[0].request.url)


def test_arm_timestamps_with_seven_fraction_digits_parse() -> None:
    assert parse_time("2026-01-05T09:00:00.1234567Z") == datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)
    assert parse_time("2026-12-01T12:30:38.595852Z") == datetime(2026, 12, 1, 12, 30, 38, 595852, tzinfo=UTC)
    assert parse_time("garbage") is None


def test_instance_types_are_read_from_the_factory_pipelines() -> None:
    found = compute.required_instance_types(REPO_ADF)
    assert set(found) == {"gpu-a100", "gpu-t4", "cpu-small"}  # train, validate (pl_train_and_validate), mirror


def kubernetes_compute(identity: dict[str, Any], instance_types: list[str]) -> dict[str, Any]:
    return {"identity": identity, "properties": {
        "computeType": "Kubernetes", "provisioningState": "Succeeded", "isAttachedCompute": True,
        "resourceId": TARGETS.cluster_id("aks"),
        "properties": {"namespace": "azureml", "instanceTypes": {n: {} for n in instance_types}}}}


@responses.activate
def test_compute_missing_an_instance_type_and_with_two_identities_fails_both_checks() -> None:
    get(TARGETS.workspace_id, {"properties": {"provisioningState": "Succeeded"}})
    get(TARGETS.compute_id, kubernetes_compute(
        {"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": {"/id/a": {}}}, ["gpu-a100"]))
    checks = by_id(compute.check(context()))
    assert checks["compute"].status == "ok"
    assert checks["compute-identity"].status == "fail"
    assert checks["compute-instance-types"].status == "fail"
    assert "missing cpu-small, gpu-t4" in checks["compute-instance-types"].evidence


@responses.activate
def test_list_follows_next_link_pages() -> None:
    responses.add(responses.GET, f"{ARM}/things", json={"value": [{"n": 1}], "nextLink": f"{ARM}/things/page2"})
    responses.add(responses.GET, f"{ARM}/things/page2", json={"value": [{"n": 2}]})
    assert [i["n"] for i in reader().list("/things", "2024-01-01")] == [1, 2]


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationFailed), (503, Throttled)])
@responses.activate
def test_arm_refusals_that_stop_everything_are_classified(status: int, error: type[Exception]) -> None:
    get("/x", {"error": {"code": "Nope", "message": "no"}}, status=status)
    with pytest.raises(error):
        reader().get("/x", "2024-01-01")


@responses.activate
def test_a_missing_resource_is_a_read_error_the_link_reports() -> None:
    get("/x", {"error": {"code": "ResourceNotFound", "message": "gone"}}, status=404)
    with pytest.raises(ArmReadError) as info:
        reader().get("/x", "2024-01-01")
    assert info.value.summary == "404 ResourceNotFound"


def test_unreachable_arm_is_an_azure_error() -> None:
    with pytest.raises(AzureError, match="cannot reach Azure Resource Manager"):
        PipelineArmReader(SandboxCredential(), "https://127.0.0.1:9", retries=0).get("/x", "2024-01-01")


def test_root_cause_is_the_most_upstream_failure_not_the_first_printed() -> None:
    report = PreflightReport((
        LinkResult("ci-identity", "t", (Check("ci-blob-data", "fail", "e", "f"),)),
        LinkResult("storage", "t", (Check("workspace-datastore-auth", "fail", "e2", "f2"),)),
    ))
    assert report.root_cause is not None and report.root_cause.check.id == "workspace-datastore-auth"
    assert report.to_dict()["rootCause"]["link"] == "storage"


ENV = {"CICD_SUBSCRIPTION_ID": SUB, "CICD_RESOURCE_GROUP": "rg", "CICD_STORAGE_ACCOUNT": "pointersa",
       "CICD_WORKSPACE": "mlw", "CICD_COMPUTE": "aks-gpu", "CICD_ARM_ENDPOINT": "https://127.0.0.1:9"}


@pytest.mark.parametrize(("args", "env", "message"), [
    ((), {"CICD_SUBSCRIPTION_ID": "not-a-guid"}, "is not a subscription id"),
    (("--account", "Bad_Name"), {}, "--account 'Bad_Name' is not a valid Azure resource name"),
    (("--adf-dir", "no/such/folder"), {}, "no such folder"),
    (("--fresh-minutes", "soon"), {}, "positive number of minutes"),
    ((), {"CICD_WORKSPACE": ""}, "--workspace / CICD_WORKSPACE"),
])
def test_bad_input_is_a_configuration_error_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], env: dict[str, str],
    message: str, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # no cicd-tools.toml here: the names come from the flags and variables only
    for name, value in (ENV | env).items():
        monkeypatch.setenv(name, value)
    assert main(["preflight", *args]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_link_name_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--skip", "everything"]) == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err


def test_arm_that_is_down_is_exit_3_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("cicd_tools.credentials.build_credential", lambda: SandboxCredential())
    assert main(["preflight", "--adf-dir", str(REPO_ADF)]) == 3
    assert "cannot reach Azure Resource Manager at https://127.0.0.1:9" in capsys.readouterr().err


def test_failures_and_warnings_become_ci_annotations_with_the_root_cause_marked() -> None:
    import io

    from cicd_tools.ci import CiDialect
    from cicd_tools.cli._base import Context as CliContext
    from cicd_tools.cli.preflight import _annotate, render

    report = PreflightReport((
        LinkResult("storage", "t", (Check("workspace-datastore-auth", "fail", "key mode", "use identity"),
                                    Check("pointer-account", "ok", "fine"))),
        LinkResult("rbac-freshness", "t", (Check("rbac-fresh-assignment", "warn", "created 1 min ago", "wait"),)),
    ), {"name": "ci", "oid": "o"})
    stream = io.StringIO()
    _annotate(report, CliContext(output="text", ci=CiDialect.create("github", stream=stream)))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "::error title=preflight::[storage] workspace-datastore-auth (root cause): key mode. Fix: use identity",
        "::warning title=preflight::[rbac-freshness] rbac-fresh-assignment: created 1 min ago. Fix: wait",
    ]
    text = render(report, 0.5).splitlines()
    assert text[1] == "root cause: [storage] workspace-datastore-auth: key mode"
    assert text[2] == "  fix: use identity"


@responses.activate
def test_compute_identity_needs_a_data_role_only_once_shared_key_is_disabled() -> None:
    store = f"{TARGETS.group_id}/providers/Microsoft.Storage/storageAccounts/mlwstore"
    get(TARGETS.workspace_id, {"properties": {"provisioningState": "Succeeded", "storageAccount": store}})
    get(TARGETS.compute_id, kubernetes_compute({"type": "SystemAssigned", "principalId": FACTORY_PID},
                                               ["gpu-a100", "gpu-t4"]))
    get(f"{store}/providers/Microsoft.Authorization/roleAssignments", {"value": []})
    get(store, {"properties": {"allowSharedKeyAccess": None}})
    assert by_id(compute.check(context()))["compute-identity-data-role"].status == "ok"
    responses.replace(responses.GET, ARM + store, json={"properties": {"allowSharedKeyAccess": False}})
    check = by_id(compute.check(context()))["compute-identity-data-role"]
    assert check.status == "fail" and "shared key is disabled" in check.evidence
    assert f'--role "Storage Blob Data Contributor" --scope {store}' in str(check.fix)


@responses.activate
def test_management_group_grants_apply_and_grants_below_the_resource_do_not() -> None:
    mg = "/providers/Microsoft.Management/managementGroups/platform"
    get(f"{TARGETS.account_id}{AUTHZ}/roleAssignments",
        {"value": [assignment(FACTORY_PID, BLOB_READER, f"{TARGETS.container_scope}-other"),
                   assignment(FACTORY_PID, BLOB_READER, f"{TARGETS.account_id}/blobServices/default/containers/x"),
                   assignment(FACTORY_PID, DATA_SCIENTIST, mg)]})
    definition(BLOB_READER, "Storage Blob Data Reader", [],
               ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"])
    definition(DATA_SCIENTIST, "AzureML Data Scientist", ["*/read"], [])
    rbac = Rbac(reader())
    blob = rbac.check(FACTORY_PID, TARGETS.account_id,
                      ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",), data=True)
    assert not blob.granted  # the only blob grants sit on containers below the account
    read = rbac.check(FACTORY_PID, TARGETS.account_id, ("Microsoft.Storage/storageAccounts/read",), data=False)
    assert read.granted and read.grants[0].scope == mg


@responses.activate
def test_a_storage_web_activity_without_any_connect_via_fails(tmp_path: Path) -> None:
    healthy_factory()
    adf = tmp_path / "adf"
    shutil.copytree(REPO_ADF, adf)
    pipeline = adf / "pipeline" / "pl_run_aml_job.json"
    doc = json.loads(pipeline.read_text())
    web = next(a for a in doc["properties"]["activities"] if "connectVia" in a.get("typeProperties", {}))
    del web["typeProperties"]["connectVia"]
    pipeline.write_text(json.dumps(doc))
    targets = Targets(**{**TARGETS.__dict__, "adf_dir": adf})
    check = by_id(factory.check(context(targets)))["factory-connect-via"]
    assert check.status == "fail" and f"pl_run_aml_job/{web['name']}" in check.evidence
    assert "inside each activity's typeProperties" in str(check.fix)
