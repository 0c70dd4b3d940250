"""The coverage page holds: every operation it marks emulated answers 200 or Azure's error for the request, every
other one 501 NotImplemented naming it; driven with plain requests (every row) and with the official clients
(azure-mgmt-storage, azure-mgmt-datafactory, azure-ai-ml) for a representative set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.datafactory import DataFactoryManagementClient
from azure.mgmt.storage import StorageManagementClient

from cicd_tools.codeassets.sdk import build_ml_client
from cicd_tools.codeassets.workspace import WorkspaceRef
from cicd_tools.sandbox.datafactory.store import MANAGED_IR
from cicd_tools.sandbox.identity.identity import SandboxCredential
from cicd_tools.sandbox.runtime import Sandbox
from tests.unit.test_sandbox_coverage import coverage_script, specs_folder

SCRIPT = coverage_script()


def operations() -> list[Any]:
    return list(SCRIPT.spec_operations(specs_folder(SCRIPT)))


@pytest.fixture(scope="module")
def table() -> Any:
    return SCRIPT.router()


def test_every_row_of_the_page_answers_as_the_page_says(sandbox_env: Sandbox, table: Any) -> None:
    sb = sandbox_env
    token = SandboxCredential().get_token(sb.arm_endpoint + "/.default").token
    for op in operations():
        version = SCRIPT.PROVIDERS[op.provider][1]
        answer = requests.request(
            op.method, sb.arm_endpoint + SCRIPT.sample_path(op.path), params={"api-version": version},
            json={} if op.method in ("PUT", "POST", "PATCH") else None, headers={"Authorization": f"Bearer {token}"},
            verify=str(sb.ca_bundle), timeout=30)
        row = f"{op.operation_id} {op.method} {op.path}"
        if SCRIPT.emulated(table, op):
            assert answer.status_code != 501, row
            if answer.status_code >= 400:  # Azure's error for this request (a sample name, an empty body)
                code = answer.json()["error"]["code"]
                assert code and code != "NotImplemented", row
        else:
            assert answer.status_code == 501, row
            error = answer.json()["error"]
            assert error["code"] == "NotImplemented" and op.method in error["message"], row


@pytest.fixture
def storage(sandbox_env: Sandbox) -> StorageManagementClient:
    return StorageManagementClient(SandboxCredential(), sandbox_env.subscription_id, base_url=sandbox_env.arm_endpoint,
                                   credential_scopes=[sandbox_env.arm_endpoint + "/.default"])


def test_azure_mgmt_storage_lists_accounts_and_keys_and_gets_501_for_the_rest(
    sandbox_env: Sandbox, storage: StorageManagementClient
) -> None:
    sb = sandbox_env
    names = {a.name for a in storage.storage_accounts.list_by_resource_group(sb.resource_group)}
    assert sb.storage_account in names and names == {a.name for a in storage.storage_accounts.list()}
    listed = storage.storage_accounts.list_keys(sb.resource_group, sb.storage_account)
    keys = getattr(listed, "keys_property", None) or listed.keys  # 25.x renamed it (a dict-like model)
    assert [k.key_name for k in keys] == ["key1", "key2"] and keys[0].value == sb.account_key(sb.storage_account)
    assert storage.storage_accounts.get_properties(sb.resource_group, sb.storage_account).name == sb.storage_account
    with pytest.raises(HttpResponseError) as info:
        storage.storage_accounts.regenerate_key(sb.resource_group, sb.storage_account, {"keyName": "key1"})
    assert (info.value.status_code, info.value.error.code) == (501, "NotImplemented")
    with pytest.raises(HttpResponseError) as info:
        storage.storage_accounts.delete(sb.resource_group, sb.storage_account)
    assert info.value.status_code == 501
    assert "DELETE Microsoft.Storage/storageAccounts" in str(info.value)
    # A resource that does not exist on an emulated route is still Azure's 404, not a 501.
    with pytest.raises(HttpResponseError) as info:
        storage.storage_accounts.list_keys(sb.resource_group, "nosuchaccount")
    assert (info.value.status_code, info.value.error.code) == (404, "ResourceNotFound")


def test_azure_mgmt_datafactory_lists_factories_at_both_scopes_and_gets_501_for_the_rest(
    sandbox_env: Sandbox,
) -> None:
    sb = sandbox_env
    client = DataFactoryManagementClient(SandboxCredential(), sb.subscription_id, base_url=sb.arm_endpoint,
                                         credential_scopes=[sb.arm_endpoint + "/.default"])
    rg, name = sb.resource_group, sb.layout.factory
    assert name in {f.name for f in client.factories.list()}
    assert name in {f.name for f in client.factories.list_by_resource_group(rg)}
    assert client.factories.get(rg, name).name == name
    assert client.integration_runtimes.get_status(rg, name, MANAGED_IR).name == MANAGED_IR
    from azure.mgmt.datafactory.models import RunFilterParameters

    window = RunFilterParameters(last_updated_after="2020-01-01T00:00:00Z", last_updated_before="2100-01-01T00:00:00Z")
    assert client.pipeline_runs.query_by_factory(rg, name, window).value == []
    for call in (lambda: client.trigger_runs.query_by_factory(rg, name, window),
                 lambda: client.factories.delete(rg, name)):
        with pytest.raises(HttpResponseError) as info:
            call()
        assert (info.value.status_code, info.value.error.code) == (501, "NotImplemented")
    with pytest.raises(HttpResponseError) as info:
        client.pipelines.get(rg, name, "no-such-pipeline")
    assert info.value.status_code == 404


@pytest.fixture
def ml(sandbox_env: Sandbox) -> Iterator[Any]:
    ws = WorkspaceRef(sandbox_env.subscription_id, sandbox_env.resource_group, sandbox_env.layout.workspace,
                      sandbox_env.arm_endpoint)
    yield build_ml_client(ManagedIdentityCredential(), ws)


def test_azure_ai_ml_lists_vm_sizes_computes_and_jobs(sandbox_env: Sandbox, ml: Any) -> None:
    sizes = {s.name for s in ml.compute.list_sizes()}
    assert "Standard_DS3_v2" in sizes
    assert {s.name for s in ml.compute.list_sizes(compute_type="kubernetes")} == set()  # none are for AKS
    assert sandbox_env.layout.compute in {c.name for c in ml.compute.list()}
    assert isinstance(list(ml.jobs.list()), list)
